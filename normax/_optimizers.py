"""Named optimizers: steepest descent, sign descent, normalized SGD.

Each is a literal ``optax.chain`` of normax pieces, so it can be read and
rebuilt with a change. Scion lives in ``_scion.py``, Muon in ``_muon.py``.
"""

from __future__ import annotations

from typing import Any

import optax

from normax._checks import NONNEGATIVE, POSITIVE, UNIT, check_args, renamed
from normax._dual_norm import scale_by_dual_norm
from normax._leafwise import with_checked_updates
from normax._lmo import scale_by_lmo
from normax._momentum import momentum
from normax._norms import Frobenius, Sign


def steepest_descent(
  learning_rate: float | optax.Schedule,
  norm: Any,
  sharpness: float = 1.0,
  *,
  modular: bool = False,
  masses: float | Any = None,
) -> optax.GradientTransformation:
  r"""Steepest descent under a norm, with sharpness ``λ`` (no momentum).

  .. math::
    Δw = −(γ/λ)·‖g‖†·dualize(g) = argmin_(Δw) ⟨g, Δw⟩ + (λ/2γ)·‖Δw‖²

  per leaf, or with ``modular=True`` the modular-norm version of
  :func:`normax.scale_by_dual_norm`. The chain is
  ``optax.chain(normax.scale_by_dual_norm(norm, sharpness, ...),
  optax.scale_by_learning_rate(learning_rate))``.

  Args:
    learning_rate: ``γ``, a float or an ``optax.Schedule``.
    norm: A norm, a name, or a per-leaf tree/callable as in
      :func:`normax.scale_by_lmo`.
    sharpness: ``λ``.
    modular: One global dual-norm factor (the modular max-norm) instead of
      one per leaf.
    masses: Per-leaf masses for ``modular``, see
      :func:`normax.scale_by_dual_norm`.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.steepest_descent(0.1, "frobenius")
    >>> g = {"w": jnp.array([3.0, 4.0])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["w"]  # Frobenius is self-dual: plain gradient descent
    Array([-0.3, -0.4], dtype=float32)

  References:
    Bernstein & Newhouse, *Old Optimizer, New Norm: An Anthology*, 2024,
    Prop. 1 (steepest descent) and Prop. 7 (modular norm).
  """
  check_args(
    "normax.steepest_descent",
    learning_rate=(learning_rate, NONNEGATIVE),
    sharpness=(sharpness, POSITIVE),
    masses=(masses, NONNEGATIVE),
  )
  chain = optax.chain(
    scale_by_dual_norm(norm, sharpness, modular=modular, masses=masses),
    optax.scale_by_learning_rate(learning_rate),
  )
  return with_checked_updates(chain, "normax.steepest_descent")


def _maybe_momentum(beta, nesterov, mu_dtype) -> tuple[optax.GradientTransformation, ...]:
  if isinstance(beta, int | float) and beta == 0 and not nesterov:
    return ()
  return (momentum(beta, nesterov=nesterov, mu_dtype=mu_dtype),)


@renamed("normax.sign_descent", momentum_dtype="mu_dtype=")
def sign_descent(
  learning_rate: float | optax.Schedule,
  *,
  beta: float | optax.Schedule = 0.0,
  nesterov: bool = False,
  normalized: bool = False,
  mu_dtype=None,
) -> optax.GradientTransformation:
  r"""Sign descent (``beta = 0``) or Signum (``beta > 0``).

  .. math::
    d ← β·d + (1 − β)·g,  x ← x − γ·sign(d)

  (divided by ``fan_in`` per matrix with ``normalized=True``, Scion's
  ``Sign``). The chain is ``optax.chain(normax.momentum(beta),
  normax.scale_by_lmo(normax.Sign(normalized)),
  optax.scale_by_learning_rate(learning_rate))``, without the momentum when
  ``beta == 0``.

  Args:
    learning_rate: ``γ``, a float or an ``optax.Schedule``.
    beta: Momentum ``β``; ``0`` is plain sign descent.
    nesterov: Nesterov momentum.
    normalized: Use ``Sign()`` (``sign(d)/fan_in``; matrices only) instead of
      ``Sign(normalized=False)`` (any rank).
    mu_dtype: dtype of the momentum buffer.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.sign_descent(0.1)
    >>> g = {"w": jnp.array([3.0, -4.0, 0.0])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["w"]
    Array([-0.1,  0.1, -0. ], dtype=float32)

  References:
    Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024, Sec. 3.1 (Adam
    without EMA is sign descent); Bernstein et al., *signSGD*, 2018.
  """
  check_args("normax.sign_descent", learning_rate=(learning_rate, NONNEGATIVE), beta=(beta, UNIT))
  chain = optax.chain(
    *_maybe_momentum(beta, nesterov, mu_dtype),
    scale_by_lmo(Sign(normalized=normalized)),
    optax.scale_by_learning_rate(learning_rate),
  )
  return with_checked_updates(chain, "normax.sign_descent")


@renamed("normax.normalized_sgd", momentum_dtype="mu_dtype=")
def normalized_sgd(
  learning_rate: float | optax.Schedule,
  *,
  beta: float | optax.Schedule = 0.0,
  nesterov: bool = False,
  mu_dtype=None,
) -> optax.GradientTransformation:
  r"""Normalized SGD: each leaf's (momentum) update divided by its Frobenius norm.

  .. math::
    d ← β·d + (1 − β)·g,  x ← x − γ·d / ‖d‖_F

  per leaf (per matrix for stacked leaves). The chain is
  ``optax.chain(normax.momentum(beta), normax.scale_by_lmo(normax.Frobenius()),
  optax.scale_by_learning_rate(learning_rate))``, without the momentum when
  ``beta == 0``.

  Args:
    learning_rate: ``γ``, a float or an ``optax.Schedule``.
    beta: Momentum ``β``; ``0`` uses the raw gradient.
    nesterov: Nesterov momentum.
    mu_dtype: dtype of the momentum buffer.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.normalized_sgd(1.0)
    >>> g = {"w": jnp.array([3.0, 4.0])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["w"]
    Array([-0.6, -0.8], dtype=float32)

  References:
    Hazan et al., *Beyond Convexity: Stochastic Quasi-Convex Optimization*,
    2015; Cutkosky & Mehta, *Momentum Improves Normalized SGD*, 2020;
    Pethick et al., 2025, Table 1.
  """
  check_args("normax.normalized_sgd", learning_rate=(learning_rate, NONNEGATIVE), beta=(beta, UNIT))
  chain = optax.chain(
    *_maybe_momentum(beta, nesterov, mu_dtype),
    scale_by_lmo(Frobenius()),
    optax.scale_by_learning_rate(learning_rate),
  )
  return with_checked_updates(chain, "normax.normalized_sgd")
