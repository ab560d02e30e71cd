"""``scale_by_lmo``: replace each update by its norm's dualized direction."""

from __future__ import annotations

from typing import Any

import jax
import optax

from normax._grouping import dualize_leaves
from normax._leafwise import resolve_norms
from normax._matrix_view import matrix_views
from normax._sharding import leading_owners, with_auto_axes_tree


def dualize_tree(
  norms: Any, updates: optax.Updates, *, views: Any = None, batch: bool = True
) -> optax.Updates:
  """``dualize`` of each leaf under its norm (in its matrix view); same-shape matrices
  batched if ``batch``.

  On ``Explicit`` mesh axes each output keeps its leaf's sharding.
  """
  flat, treedef = jax.tree.flatten(updates)
  found = None if views is None else matrix_views(updates, views)
  resolved = resolve_norms(norms, updates, found)
  found = found or [None] * len(flat)
  # Read from the leaves' Explicit types before they are made Auto below.
  owners = [_stack_owners(u, v) for u, v in zip(flat, found, strict=True)]

  def run(leaves):
    mats = [u if v is None else v.to(u) for v, u in zip(found, leaves, strict=True)]
    out = dualize_leaves(resolved, mats, owners, batch=batch)
    return [
      d if v is None else v.back(d, u.shape) for v, d, u in zip(found, out, leaves, strict=True)
    ]

  return treedef.unflatten(with_auto_axes_tree(run, flat))


def _stack_owners(leaf: jax.Array, view) -> tuple[tuple[str, ...], ...]:
  """The mesh axes sharding each leading axis of the leaf in its matrix layout (its stack
  axes first; a view's blocks axis is never sharded)."""
  owners = leading_owners(leaf)
  if view is None:
    return owners
  stack = view.resolve(leaf.ndim)[0]
  return tuple(owners[a] for a in stack) + (((),) if view.blocks > 1 else ())


def scale_by_lmo(
  norms: Any, *, views: Any = None, batch: bool = True
) -> optax.GradientTransformation:
  r"""Dualizes each update under its layer's norm (the LMO step of Scion).

  Per leaf, with ``d`` the incoming update (e.g. a momentum):

  .. math::
    d ↦ dualize(d) = argmax_(‖t‖ ≤ 1) ⟨d, t⟩ = −lmo(d).

  The output is gradient-aligned, so the final
  ``optax.scale_by_learning_rate`` turns it into Scion's
  ``x ← x + γ·lmo(d)``.

  Args:
    norms: One :class:`normax.Norm` or name for every leaf; a pytree of
      norms/names with the parameters' structure (or a prefix of it, a norm
      at an inner node covering its whole subtree); or a callable taking the
      updates (same structure and shapes as the parameters) and returning
      such a pytree. A ``None`` in the tree passes that leaf's update through
      unchanged (use ``optax.partition`` to give it another transform).
      Each leaf is validated with :meth:`normax.Norm.check` at trace time;
      errors name the parameter path.
    views: The :class:`normax.MatrixView` of each leaf (one for all, a pytree
      or prefix of them with ``None`` for leaves in their own layout, or a
      callable on the updates): the norm acts on the leaf in that view's
      matrix layout (e.g. an attention kernel ``(d, heads, head_dim)`` as one
      ``d × heads·head_dim`` matrix) and the result is put back.
    batch: Orthogonalize leaves that share a :class:`normax.Spectral`-family
      norm (same Newton–Schulz settings), a matrix shape up to transposition
      (``d×4d`` with ``4d×d``) and a dtype in one batched call, instead of
      one call per leaf. The result is the per-leaf one up to float rounding.
      Grouping stacks the leaves (a copy) and transposes the minority
      orientation. It suits sharded parameters too: on an ``Explicit`` mesh
      every update keeps its leaf's sharding, and under
      ``Spectral(sharding="distribute")`` the stack is what is spread over
      the devices (:doc:`/sharding`). ``batch=False`` keeps one call per
      leaf, e.g. so that ``"partition"`` works inside each leaf's own layout
      when same-shape leaves are sharded very differently.

  Returns:
    A stateless ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.scale_by_lmo({"w": "sign", "b": "bias_rms"})
    >>> g = {"w": jnp.array([[1.0, -2.0], [3.0, 0.0]]), "b": jnp.array([3.0, -4.0, 0.0, 0.0])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["w"]
    Array([[ 0.5, -0.5],
           [ 0.5,  0. ]], dtype=float32)
    >>> u["b"]  # √4 · b / ‖b‖₂
    Array([ 1.2, -1.6,  0. ,  0. ], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Sec. 3 (uSCG/SCG) and Table 2 (layerwise norms).
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return dualize_tree(norms, updates, views=views, batch=batch), state

  return optax.GradientTransformation(init_fn, update_fn)
