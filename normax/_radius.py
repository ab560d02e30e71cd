"""``scale_by_radius``: multiply each update by its layer's radius ρ."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._leafwise import cast_scalar, check_nonnegative, has_schedule, resolve_scalars


class ScaleByRadiusState(NamedTuple):
  """Step count, for radius schedules."""

  count: jax.Array


def scale_by_radius(radius: float | optax.Schedule | Any) -> optax.GradientTransformation:
  r"""Scales each update by its layer's radius ``ρ`` (Scion's per-layer scale).

  .. math::
    u ↦ ρ·u,

  so after :func:`normax.scale_by_lmo` the step ``-γρ·dualize(d)`` has norm
  ``γρ`` in that layer's norm.

  Args:
    radius: ``ρ`` for every leaf, a float or an ``optax.Schedule`` of the
      step count; or a pytree of floats/schedules with the parameters'
      structure (or a prefix of it). A callable is always read as a
      schedule; per-role radii come from a tree or from ``optax.partition``
      (as :func:`normax.scion` does). ``None`` leaves pass through.

  Returns:
    An ``optax.GradientTransformation``; its state holds a step count when a
    radius is a schedule (``optax.EmptyState`` otherwise).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.scale_by_radius({"w": 2.0, "b": 0.5})
    >>> g = {"w": jnp.ones(2), "b": jnp.ones(2)}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["w"], u["b"]
    (Array([2., 2.], dtype=float32), Array([0.5, 0.5], dtype=float32))

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Sec. 3 (radius ρ) and Sec. 5 (per-layer radii).
  """
  check_nonnegative(radius, "normax.scale_by_radius radius")
  scheduled = has_schedule(radius)

  def init_fn(params):
    del params
    return ScaleByRadiusState(count=jnp.zeros([], jnp.int32)) if scheduled else optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    flat, treedef = jax.tree.flatten(updates)
    radii = resolve_scalars(radius, updates, state.count if scheduled else None, "radius")
    out = [
      u if r is None else u * cast_scalar(r, u.dtype) for r, u in zip(radii, flat, strict=True)
    ]
    if scheduled:
      state = ScaleByRadiusState(count=optax.safe_increment(state.count))
    return treedef.unflatten(out), state

  return optax.GradientTransformation(init_fn, update_fn)
