"""The orthogonalizer: how the polar factor of a batch of matrices is computed, as one value.

Every setting that decides how ``U Vᵀ`` is computed (method, Newton–Schulz
steps and coefficients, compute dtype, matmul precision, preconditioning and
its guard, and where it runs on a mesh) lives in one frozen dataclass. It is
hashable, so two matrices whose norms share an :class:`Orthogonalizer` can be
orthogonalized in one batched call (``normax.scale_by_lmo(..., batch=True)``
groups by it), and a new setting added here is part of that grouping without
anything else to change.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from normax._checks import COUNT, NONNEGATIVE, check_args
from normax._newton_schulz import PRECONDITIONINGS, newton_schulz, orthogonalize_svd
from normax._schedules import freeze_coefficients, resolve_coefficients
from normax._sharding import Strategy, check_strategy, run_sharded


def static_key(obj) -> tuple:
  """A dataclass's type and field values, a traced value by identity: the key of its ``==``
  and ``hash``, which a traced value (a hyperparameter under ``optax.inject_hyperparams``)
  cannot take part in."""
  values = (getattr(obj, f.name) for f in dataclasses.fields(obj))
  return (type(obj), *(("traced", id(v)) if isinstance(v, jax.core.Tracer) else v for v in values))


def static_number(value, integer: bool = False):
  """A concrete scalar as a Python number (``optax.inject_hyperparams`` hands arrays); a
  traced one as it is."""
  if isinstance(value, jax.core.Tracer) or not hasattr(value, "dtype"):
    return value
  return int(value) if integer else float(value)


Method = Literal["newton_schulz", "gram_newton_schulz", "svd"]
METHODS = ("newton_schulz", "gram_newton_schulz", "svd")


@dataclasses.dataclass(frozen=True)
class Orthogonalizer:
  """Computes ``U Vᵀ`` of each matrix in the last two axes (leading axes: a batch).

  :class:`normax.Spectral` and :class:`normax.SpectralConv` build theirs from
  their own arguments (:attr:`normax.Spectral.orthogonalizer`); the fields
  here are those arguments, documented there. Settings are validated and
  normalized on construction (a list of coefficient triples becomes a tuple of
  tuples, a dtype its name), so equal settings give equal, hashable values.

  Args:
    method: ``"gram_newton_schulz"`` (default), ``"newton_schulz"`` or ``"svd"``
      (see :class:`normax.Spectral`).
    steps: Newton–Schulz iterations. A traced integer (a hyperparameter under
      ``optax.inject_hyperparams``) runs the iteration as a ``fori_loop``.
    coefficients: Newton–Schulz schedule (a name, one triple, or one per step).
    compute_dtype: dtype of the iterate; ``None``: float32.
    precision: ``jax.lax.Precision`` of the matmuls.
    sharding: Where it runs on sharded matrices (:doc:`/sharding`).
    preconditioning: Scaling before the first step (see :func:`normax.precondition`).
    eps: Denominator guard of the preconditioning (may be traced, as ``steps``).
    bounded: End with a cubic step that keeps every singular value ``≤ 1``
      (see :func:`normax.newton_schulz`); ``None`` (default) is ``False`` here and
      lets constrained Scion choose ``True`` (see :meth:`normax.Norm.for_constraint`).

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> orth = normax.Spectral(steps=6).orthogonalizer
    >>> orth.steps, orth == normax.Orthogonalizer(steps=6)
    (6, True)
    >>> g = jax.random.normal(jax.random.key(0), (4, 8))
    >>> q = normax.Orthogonalizer(method="svd")(g)  # U Vᵀ: orthonormal rows
    >>> bool(jnp.allclose(q @ q.T, jnp.eye(4), atol=1e-5))
    True
  """

  method: Method = "gram_newton_schulz"
  steps: int = 5
  coefficients: str | tuple = "quintic"
  compute_dtype: str | None = None
  precision: str | None = None
  sharding: Strategy = "auto"
  preconditioning: str = "frobenius"
  eps: float = 0.0
  bounded: bool | None = None

  def __post_init__(self):
    check_args("normax.Orthogonalizer", steps=(self.steps, COUNT), eps=(self.eps, NONNEGATIVE))
    object.__setattr__(self, "steps", static_number(self.steps, integer=True))
    object.__setattr__(self, "eps", static_number(self.eps))
    if self.bounded not in (None, True, False):
      raise TypeError(f"bounded must be None, True or False, got {self.bounded!r}.")
    if self.method not in METHODS:
      raise ValueError(
        "Spectral method must be 'newton_schulz', 'gram_newton_schulz' or 'svd',"
        f" got {self.method!r}."
      )
    coeffs = freeze_coefficients(self.coefficients)  # Tuples, so the value stays hashable.
    object.__setattr__(self, "coefficients", coeffs)
    traced = isinstance(self.steps, jax.core.Tracer)
    resolve_coefficients(coeffs, None if traced else self.steps)  # Validates eagerly.
    if traced and self.bounded:
      raise TypeError(
        "normax.Orthogonalizer(bounded=True) needs a static number of steps (its final scaling"
        " depends on the schedule's peak); got a traced steps."
      )
    check_strategy(self.sharding)
    if self.preconditioning not in PRECONDITIONINGS:
      raise ValueError(
        f"Spectral preconditioning must be one of {PRECONDITIONINGS}, got {self.preconditioning!r}."
      )
    if self.compute_dtype is not None:
      object.__setattr__(self, "compute_dtype", jnp.dtype(self.compute_dtype).name)

  def __eq__(self, other):
    return isinstance(other, Orthogonalizer) and static_key(self) == static_key(other)

  def __hash__(self):
    return hash(static_key(self))

  def __call__(self, g: jax.Array, owners: tuple[str, ...] = ()) -> jax.Array:
    """``U Vᵀ`` of each matrix of ``g`` (no dimension scale), run as :attr:`sharding` says.

    ``owners``: mesh axes that already shard the first axis of a ``(g, c, m, n)`` stack (e.g.
    experts over an expert-parallel axis); ``"gather"`` and ``"distribute"`` then keep each
    matrix on the devices that own it (see :doc:`/sharding`).
    """
    return run_sharded(self._polar, g, self.sharding, owners)

  def _polar(self, g: jax.Array) -> jax.Array:
    if self.method == "svd":
      return orthogonalize_svd(g)
    return newton_schulz(
      g,
      steps=self.steps,
      coefficients=self.coefficients,
      compute_dtype=self.compute_dtype,
      precision=self.precision,
      gram=None if self.method == "gram_newton_schulz" else False,
      preconditioning=self.preconditioning,
      eps=self.eps,
      bounded=bool(self.bounded),
    )
