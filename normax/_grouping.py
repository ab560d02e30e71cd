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
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from normax._base import Norm
from normax._spectral import Spectral


def _plan(norm: Spectral, leaf: jax.Array):
  """The leaf's matrices ``(-1, m, n)``, its dualize scale and its group key."""
  mats, scale = norm.as_matrices(leaf)
  m, n = mats.shape[-2:]
  key = (norm.orthogonalizer, min(m, n), max(m, n), jnp.dtype(leaf.dtype).name)
  return mats.reshape(-1, m, n), scale, key


def dualize_leaves(norms: Sequence[Norm | None], leaves: Sequence[jax.Array]) -> list[jax.Array]:
  """``norm.dualize(leaf)`` for every leaf (``None`` norms pass the leaf through).

  Spectral-family leaves that share an orthogonalizer, a matrix shape (up to
  transposition) and a dtype are orthogonalized in one batched call.
  """
  out: list = list(leaves)
  groups: dict = {}
  for i, (norm, leaf) in enumerate(zip(norms, leaves, strict=True)):
    if norm is None:
      continue
    if isinstance(norm, Spectral) and leaf.size:  # A zero-size leaf has no matrix to share.
      norm.check(leaf.shape, leaf.dtype)
      plan = _plan(norm, leaf)
      groups.setdefault(plan[2], []).append((i, plan))
    else:
      out[i] = norm.dualize(leaf)
  for (orthogonalizer, *_), group in groups.items():
    members, plans = [i for i, _ in group], [plan for _, plan in group]
    if len(members) == 1:  # Nothing to share: exactly the per-leaf path.
      i = members[0]
      out[i] = norms[i].dualize(leaves[i])
      continue
    wide = [p[0].shape[-2] <= p[0].shape[-1] for p in plans]
    to_wide = 2 * sum(wide) >= len(wide)  # Turn the minority, not the majority.
    stack, sizes = [], []
    for (mats, _, _), is_wide in zip(plans, wide, strict=True):
      flip = is_wide != to_wide
      stack.append(jnp.swapaxes(mats, -1, -2) if flip else mats)
      sizes.append(mats.shape[0])
    polar = orthogonalizer(jnp.concatenate(stack, axis=0))
    start = 0
    for i, (_, scale, _), is_wide, size in zip(members, plans, wide, sizes, strict=True):
      part = polar[start : start + size]
      start += size
      if is_wide != to_wide:
        part = jnp.swapaxes(part, -1, -2)
      out[i] = norms[i].from_polar(part, scale, leaves[i])
  return out
