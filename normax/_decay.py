"""``add_constrained_decay``: the ``μ·x`` term that keeps Scion's weights in a ball."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._checks import NONNEGATIVE, check_args
from normax._leafwise import (
  cast_scalar,
  check_nonnegative,
  has_schedule,
  leaf_paths,
  resolve_scalars,
)


class AddConstrainedDecayState(NamedTuple):
  """Step count, for decay schedules."""

  count: jax.Array


def add_constrained_decay(
  decay: float | optax.Schedule | Any = 1.0,
) -> optax.GradientTransformation:
  r"""Adds ``μ·x`` to the update, before the learning rate (Scion's SCG).

  Placed after :func:`normax.scale_by_lmo` and :func:`normax.scale_by_radius`
  and before ``optax.scale_by_learning_rate(γ)``, the step becomes

  .. math::
    x ← x − γ·(ρ·dualize(d) + μ·x) = (1 − γμ)·x − γρ·dualize(d).

  ``μ = 1`` is the constrained SCG of Scion: a convex combination of ``x``
  and ``-(ρ/μ)·dualize(d)``, which lies in the ball of radius ``ρ/μ``, so a
  layer with ``‖x‖ ≤ ρ/μ`` stays inside for every ``γμ ∈ [0, 1]``, provided
  ``‖dualize(d)‖ ≤ 1`` (:meth:`normax.Norm.for_constraint`). ``μ = 0``
  is the unconstrained uSCG. Unlike ``optax.add_decayed_weights`` (AdamW's
  decoupled decay, identical arithmetic) the decay here belongs to the
  constraint: it is exactly what bounds the weights.

  Args:
    decay: ``μ`` for every leaf, a float or an ``optax.Schedule``; or a pytree
      of floats/schedules with the parameters' structure (or a prefix of
      it). ``None`` leaves get no decay.

  Returns:
    An ``optax.GradientTransformation`` that needs ``params`` in ``update``; its
    state holds a step count only for a schedule (``optax.EmptyState`` otherwise).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.add_constrained_decay(0.5)
    >>> params = {"w": jnp.array([2.0, -2.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(params), params)
    >>> u["w"]
    Array([2., 0.], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Sec. 3, Algorithm 1 (SCG: ``x ← (1-γ)x + γρ·lmo(d)``).
  """
  check_nonnegative(decay, "normax.add_constrained_decay decay")
  scheduled = has_schedule(decay)

  def init_fn(params):
    del params
    if scheduled:
      return AddConstrainedDecayState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.add_constrained_decay needs the parameters: call tx.update(grads, state, params)."
      )
    flat, treedef = jax.tree.flatten(updates)
    try:
      flat_p = treedef.flatten_up_to(params)
    except (ValueError, TypeError) as e:
      raise ValueError(
        f"add_constrained_decay: params do not match the updates' structure"
        f" (update paths {leaf_paths(updates)}). {e}"
      ) from None
    mus = resolve_scalars(decay, updates, state.count if scheduled else None, "decay")
    out = [
      u if mu is None else u + cast_scalar(mu, u.dtype) * p.astype(u.dtype)
      for mu, u, p in zip(mus, flat, flat_p, strict=True)
    ]
    if scheduled:
      state = AddConstrainedDecayState(count=optax.safe_increment(state.count))
    return treedef.unflatten(out), state

  return optax.GradientTransformation(init_fn, update_fn)


def add_cautious_weight_decay(
  weight_decay: float | optax.Schedule = 0.0, mask: Any = None
) -> optax.GradientTransformation:
  r"""Decoupled weight decay applied only where the update and the weight agree in sign.

  With ``u`` the incoming (gradient-aligned) update and ``λ`` the decay:

  .. math::
    u \mapsto u + λ\, \mathbb{1}[u ⊙ x \ge 0] ⊙ x,

  so after ``optax.scale_by_learning_rate`` an entry is decayed toward zero
  only when the optimizer step already moves it toward zero; where the step
  pushes it away, decay would fight the step and is skipped. A drop-in for
  ``optax.add_decayed_weights(weight_decay, mask)``.

  Args:
    weight_decay: ``λ``, float or schedule.
    mask: As in ``optax.add_decayed_weights``: a pytree of bools (or a
      prefix), or a callable ``params -> such a pytree``; ``False`` leaves get
      no decay.

  Returns:
    An ``optax.GradientTransformation`` that needs ``params`` in ``update``; its
    state holds a step count only for a schedule (``optax.EmptyState`` otherwise).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.add_cautious_weight_decay(0.5)
    >>> x = jnp.array([2.0, 2.0, -2.0])
    >>> u, _ = tx.update(jnp.array([1.0, -1.0, -1.0]), tx.init(x), x)
    >>> u  # decayed where sign(u) = sign(x): entries 0 and 2
    Array([ 2., -1., -2.], dtype=float32)

  References:
    Chen et al., *Cautious Weight Decay*, 2025 (arXiv:2510.12402).
  """
  check_args("normax.add_cautious_weight_decay", weight_decay=(weight_decay, NONNEGATIVE))
  scheduled = callable(weight_decay)

  def init_fn(params):
    del params
    if scheduled:
      return AddConstrainedDecayState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.add_cautious_weight_decay needs the parameters: call"
        " tx.update(grads, state, params)."
      )
    lam = weight_decay(state.count) if scheduled else weight_decay

    def leaf(u, p):
      p = p.astype(u.dtype)
      return u + jnp.where(u * p >= 0, cast_scalar(lam, u.dtype) * p, jnp.zeros_like(p))

    out = jax.tree.map(leaf, updates, params)
    if scheduled:
      state = AddConstrainedDecayState(count=optax.safe_increment(state.count))
    return out, state

  tx = optax.GradientTransformation(init_fn, update_fn)
  return tx if mask is None else optax.masked(tx, mask)
