"""Batched dualization: one orthogonalization per group of same-shape matrices.

A GPT block holds four ``d×d`` attention matrices and a ``d×4d`` / ``4d×d``
MLP pair; dualizing them one leaf at a time issues many small matmul chains.
Here leaves under a :class:`normax.Spectral`-family norm are grouped by the
orthogonalizer's settings, the short and long side of their matrix view and
their dtype; each group is stacked (tall and wide members turned to the
group's majority orientation, since ``polar(Gᵀ) = polar(G)ᵀ``), orthogonalized
in one batched call, and split back. Each matrix along the stacked axis is
independent, so the result is the per-leaf result (up to float rounding of
the batched matmuls). Other norms are elementwise or row/column-wise and gain
nothing from stacking: they are dualized leaf by leaf.

A leaf whose stack axes are sharded over mesh axes (its *owners*: experts
over an expert-parallel axis) is arranged as ``(g, c, m, n)``, the sharded
stack axes first and merged into ``g``, and grouped only with leaves of the
same owners and ``g``, stacked along ``c``: every matrix stays on the
devices that own it (see ``normax._sharding``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from normax._base import Norm
from normax._spectral import Spectral


def _plan(norm: Spectral, leaf: jax.Array, owners: Sequence[tuple[str, ...]]):
  """The leaf's matrices, how to put them back, its dualize scale and its group key.

  ``owners[j]`` are the mesh axes sharding the ``j``-th stack axis of the norm's matrix view.
  Without any, the matrices are ``(-1, m, n)``. Else ``(g, c, m, n)``: the sharded stack axes
  moved first and merged into ``g``, the others into ``c``.
  """
  mats, scale = norm.as_matrices(leaf)
  m, n = mats.shape[-2:]
  batch = mats.shape[:-2]
  owners = tuple(owners[: len(batch)]) + ((),) * max(0, len(batch) - len(owners))
  owned = [j for j, o in enumerate(owners) if o]
  axes = tuple(a for j in owned for a in owners[j])
  g = math.prod(batch[j] for j in owned)
  key = (norm.orthogonalizer, min(m, n), max(m, n), jnp.dtype(leaf.dtype).name, axes, g)
  if not owned:
    return mats.reshape(-1, m, n), None, scale, key
  order = owned + [j for j in range(len(batch)) if not owners[j]]
  perm = (*order, len(batch), len(batch) + 1)
  back = (tuple(batch[j] for j in order) + (m, n), perm)
  return mats.transpose(perm).reshape(g, -1, m, n), back, scale, key


def _put_back(part: jax.Array, back) -> jax.Array:
  """The inverse of :func:`_plan`'s ``(g, c, m, n)`` arrangement (to the matrix view)."""
  shape, perm = back
  inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
  return part.reshape(shape).transpose(inverse)


def dualize_leaves(
  norms: Sequence[Norm | None],
  leaves: Sequence[jax.Array],
  owners: Sequence[Sequence[tuple[str, ...]]] | None = None,
  *,
  batch: bool = True,
) -> list[jax.Array]:
  """``norm.dualize(leaf)`` for every leaf (``None`` norms pass the leaf through).

  Spectral-family leaves that share an orthogonalizer, a matrix shape (up to
  transposition), a dtype and owners are orthogonalized in one batched call
  (with ``batch``; else one call per leaf). ``owners[i]`` are the mesh axes
  sharding each stack axis of leaf ``i``'s matrix view (``normax._sharding.leading_owners``;
  ``None``: none): those matrices stay on the devices that hold them.
  """
  out: list = list(leaves)
  groups: dict = {}
  owners = [()] * len(leaves) if owners is None else owners
  for i, (norm, leaf) in enumerate(zip(norms, leaves, strict=True)):
    if norm is None:
      continue
    if isinstance(norm, Spectral) and leaf.size:  # A zero-size leaf has no matrix to share.
      norm.check(leaf.shape, leaf.dtype)
      plan = _plan(norm, leaf, owners[i])
      key = plan[3] if batch else (*plan[3], i)
      groups.setdefault(key, []).append((i, plan))
    else:
      out[i] = norm.dualize(leaf)
  for (orthogonalizer, _, _, _, axes, _, *_), group in groups.items():
    members, plans = [i for i, _ in group], [plan for _, plan in group]
    if len(members) == 1 and not axes:  # Nothing to share or keep: exactly the per-leaf path.
      i = members[0]
      out[i] = norms[i].dualize(leaves[i])
      continue
    wide = [p[0].shape[-2] <= p[0].shape[-1] for p in plans]
    to_wide = 2 * sum(wide) >= len(wide)  # Turn the minority, not the majority.
    along = 1 if axes else 0  # The axis the members are stacked on.
    stack, sizes = [], []
    for (mats, *_), is_wide in zip(plans, wide, strict=True):
      flip = is_wide != to_wide
      stack.append(jnp.swapaxes(mats, -1, -2) if flip else mats)
      sizes.append(mats.shape[along])
    polar = orthogonalizer(jnp.concatenate(stack, axis=along), axes)
    start = 0
    for i, (_, back, scale, _), is_wide, size in zip(members, plans, wide, sizes, strict=True):
      part = jax.lax.slice_in_dim(polar, start, start + size, axis=along)
      start += size
      if is_wide != to_wide:
        part = jnp.swapaxes(part, -1, -2)
      if back is not None:
        part = _put_back(part, back)
      out[i] = norms[i].from_polar(part, scale, leaves[i])
  return out
