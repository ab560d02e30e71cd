"""``LayerSpec``: what one label means — its norm, radius and decay."""

from __future__ import annotations

import dataclasses

import optax

from normax._base import Norm
from normax._registry import get_norm


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """The norm, radius ρ and constrained decay μ of one parameter role.

  One mapping ``{label: LayerSpec}`` configures every normax piece: the LMO
  uses ``norm``, the step is scaled by ``radius``, and ``decay`` adds ``μ·x``
  before the learning rate, so the update is ``x ← (1-γμ)x - γρ·dualize(d)``.
  ``decay=1`` is Scion's constrained mode (``‖x‖ ≤ ρ`` in ``norm``), ``0``
  unconstrained, and ``None`` (the default) leaves the choice to the
  optimizer (``normax.scion(..., constrained=True)`` gives ``1``).

  Args:
    norm: A :class:`normax.Norm` or a registered name (``"spectral"``).
    radius: ρ, a float or an ``optax.Schedule``.
    decay: μ, a float, an ``optax.Schedule``, or ``None`` for the optimizer's
      default.

  Examples:
    >>> import normax
    >>> normax.LayerSpec("spectral", radius=3.0).norm.name
    'spectral'
  """

  norm: Norm | str
  radius: float | optax.Schedule = 1.0
  decay: float | optax.Schedule | None = None

  def __post_init__(self):
    object.__setattr__(self, "norm", get_norm(self.norm))
