"""Kronecker factors of a matrix, shared by Shampoo and SOAP.

A matrix ``G`` of shape ``(..., m, n)`` is cut into zero-padded blocks of at most
``block_size`` per side (the blocks become batch axes), and each block keeps two factors,
``L ← decay·L + weight·GGᵀ`` and ``R ← decay·R + weight·GᵀG``. Factors are stored at unit
scale with a ``log2`` scale per block, ``L = 2^scale · left``, so that ``GGᵀ`` of a huge
gradient does not overflow nor that of a tiny one underflow. Here too: the inverse roots
``(A + ε‖A‖_F I)^{-e}`` of such factors, by eigendecomposition or by a coupled Newton
iteration, and the step-by-step plumbing of a transform whose state holds them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import divide, l2_norm

_F32 = jnp.float32

#: ``log2`` scale of a factor that has seen only zero gradients: finite, so that the
#: exponent differences in :func:`accumulate` never meet ``-inf - (-inf)``.
EMPTY_SCALE = -1e30


# -- blocks -------------------------------------------------------------------


def block_dims(m: int, n: int, block_size: int | None) -> tuple[int, int]:
  """The block shape ``(b_m, b_n)`` of an ``m×n`` matrix: each side capped at ``block_size``."""
  # At least 1: a zero-length side makes zero blocks of size 1 (a zero-size leaf, no factor).
  if block_size is None:
    return max(m, 1), max(n, 1)
  return max(min(m, block_size), 1), max(min(n, block_size), 1)


def to_blocks(x: jax.Array, block_size: int | None) -> jax.Array:
  """``(..., m, n) -> (..., m/b_m, n/b_n, b_m, b_n)``, zero-padding each side to a multiple."""
  *lead, m, n = x.shape
  bm, bn = block_dims(m, n, block_size)
  pm, pn = -(-m // bm) * bm, -(-n // bn) * bn
  if (pm, pn) != (m, n):
    x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, pm - m), (0, pn - n)])
  x = x.reshape(*lead, pm // bm, bm, pn // bn, bn)
  return jnp.swapaxes(x, -3, -2)


def from_blocks(xb: jax.Array, m: int, n: int) -> jax.Array:
  """Inverse of :func:`to_blocks` for an original ``m×n`` matrix (drops the padding)."""
  *lead, nbm, nbn, bm, bn = xb.shape
  x = jnp.swapaxes(xb, -3, -2).reshape(*lead, nbm * bm, nbn * bn)
  return x[..., :m, :n]


def factor_shapes(shape: tuple[int, ...], block_size: int | None):
  """Shapes of the left and right Kronecker factors of a leaf, blocks as batch axes."""
  *lead, m, n = shape
  bm, bn = block_dims(m, n, block_size)
  grid = (-(-m // bm), -(-n // bn))
  return (*lead, *grid, bm, bm), (*lead, *grid, bn, bn)


def blocks_shape(shape: tuple[int, ...], block_size: int | None) -> tuple[int, ...]:
  """Shape of :func:`to_blocks` of a leaf of this ``shape``: ``(..., grid, b_m, b_n)``."""
  left, right = factor_shapes(shape, block_size)
  return (*left[:-1], right[-1])


def mT(x: jax.Array) -> jax.Array:
  """Each matrix transposed (the last two axes swapped)."""
  return jnp.swapaxes(x, -1, -2)


# -- checks -------------------------------------------------------------------


def matrix_leaves(params: Any, what: str) -> None:
  """Raises a ``ValueError`` naming every leaf of rank < 2 (Kronecker factors need a matrix)."""
  bad = [
    (jax.tree_util.keystr(path), jnp.shape(leaf))
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    if jnp.ndim(leaf) < 2
  ]
  if bad:
    listing = ", ".join(f"{p} {s}" for p, s in bad)
    raise ValueError(
      f"{what} preconditions matrices (..., fan_in, fan_out); these leaves have rank < 2:"
      f" {listing}. Give them another transform with optax.partition, e.g. label them"
      " 'bias' and use normax.scale_by_lmo('bias_rms') there."
    )


def static_count(x: Any) -> Any:
  """A block size or interval as a Python ``int`` (``None`` stays ``None``): shapes need one."""
  if x is None:
    return None
  try:
    return int(x)
  except (TypeError, jax.errors.ConcretizationTypeError):
    raise TypeError(
      f"block sizes and intervals set shapes and must be static numbers, got {x!r}; under"
      " optax.inject_hyperparams list them in static_args."
    ) from None


# -- factors at unit scale ----------------------------------------------------


def factor_zeros(params: Any, block_size: int | None, side: int) -> Any:
  """Zero factors (``side`` 0: left, 1: right) for each leaf of ``params``, in float32."""
  return jax.tree.map(
    lambda p: jnp.zeros(factor_shapes(jnp.shape(p), block_size)[side], _F32), params
  )


def block_scales(params: Any, block_size: int | None, side: int, value: float) -> Any:
  """One ``log2`` scale per block (``side`` 0: left, 1: right) for each leaf, all ``value``."""
  return jax.tree.map(
    lambda p: jnp.full(factor_shapes(jnp.shape(p), block_size)[side][:-2], value, _F32),
    params,
  )


def block_max(gb: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(gb / m, log2 m)`` with ``m`` the largest entry of each block (:data:`EMPTY_SCALE` for
  a zero block): the blocks at unit scale, and their scale. NaN/inf stay visible."""
  m = jnp.max(jnp.abs(gb), axis=(-2, -1), keepdims=True)
  safe = jnp.where(m > 0, m, 1)
  log_m = jnp.where(m > 0, jnp.log2(safe), EMPTY_SCALE)[..., 0, 0]
  return divide(gb, safe), log_m


def accumulate(factor, log_scale, outer, log_outer, decay, weight):
  """``2^s'·F' = decay·2^s·F + weight·2^o·outer`` with ``s'`` the larger of the two terms'
  exponents, so both coefficients are at most 1: no over- or underflow at any scale."""

  def log2(c):
    c = jnp.asarray(c, _F32)
    return jnp.where(c > 0, jnp.log2(jnp.where(c > 0, c, 1)), -jnp.inf)

  old, new = log_scale + log2(decay), log_outer + log2(weight)
  scale = jnp.maximum(old, new)
  mix = lambda e: jnp.exp2(e - scale)[..., None, None]  # noqa: E731
  return mix(old) * factor + mix(new) * outer, scale


class Factors(NamedTuple):
  """One leaf's blocks at unit scale and its factors after a step (see :func:`update_factors`).

  ``unit · 2^log_m`` are the blocks; ``left · 2^left_scale`` is ``L``, ``right · 2^right_scale``
  is ``R``.
  """

  unit: jax.Array
  log_m: jax.Array
  left: jax.Array
  right: jax.Array
  left_scale: jax.Array
  right_scale: jax.Array


def update_factors(gb, left, right, left_scale, right_scale, decay, weight) -> Factors:
  """One step of both factors of the blocks ``gb`` (:func:`to_blocks`, float32):
  ``L ← decay·L + weight·GGᵀ``, ``R ← decay·R + weight·GᵀG``, block by block at unit scale.

  ``GGᵀ = 2^(2·log_m)·ĝĝᵀ`` with ``ĝ`` the block at unit scale: the products never leave
  the range of float32, whatever the scale of the gradient.
  """
  unit, log_m = block_max(gb)
  left, left_scale = accumulate(left, left_scale, unit @ mT(unit), 2 * log_m, decay, weight)
  right, right_scale = accumulate(right, right_scale, mT(unit) @ unit, 2 * log_m, decay, weight)
  return Factors(unit, log_m, left, right, left_scale, right_scale)


# -- inverse roots --------------------------------------------------------------


def inverse_root(mat: jax.Array, exponent: float, eps: float) -> jax.Array:
  """``(A + ε‖A‖_F I)^{-exponent}`` of symmetric PSD matrices by eigendecomposition.

  Directions with a zero regularized eigenvalue (e.g. ``A = 0``) map to 0, not inf.
  """
  w, q = jnp.linalg.eigh(mat)
  w = jnp.maximum(w, 0.0)
  den = w + eps * l2_norm(mat, (-2, -1))[..., 0]
  inv = jnp.where(den > 0, jnp.where(den > 0, den, 1.0) ** -exponent, 0.0)
  return (q * inv[..., None, :]) @ mT(q)


def inverse_root_newton(mat: jax.Array, p: int, eps: float, steps: int) -> jax.Array:
  """``(A + ε‖A‖_F I)^{-1/p}`` by the coupled Newton iteration (matmuls only).

  With ``A_ε = A + ε‖A‖_F I`` scaled by ``z = (1+p) / (2‖A_ε‖_F)`` (so its
  eigenvalues lie in ``(0, (1+p)/2]``, inside the region of convergence):
  ``M₀ = z A_ε``, ``H₀ = z^{1/p} I``, then ``T = ((p+1) I - M)/p``,
  ``M ← T^p M``, ``H ← H T``; ``M → I`` and ``H → A_ε^{-1/p}``. A zero
  matrix gives zero.
  """
  n = mat.shape[-1]
  eye = jnp.broadcast_to(jnp.eye(n, dtype=mat.dtype), mat.shape)
  reg = mat + eps * l2_norm(mat, (-2, -1)) * eye
  norm = l2_norm(reg, (-2, -1))
  z = jnp.where(norm > 0, (1 + p) / jnp.where(norm > 0, norm, 1.0), 0.0) / 2

  def body(_, mh):
    m, h = mh
    t = ((p + 1) * eye - m) / p
    tp = t
    for _ in range(p - 1):
      tp = tp @ t
    return tp @ m, h @ t

  m0 = z * reg
  h0 = z ** (1.0 / p) * eye
  return jax.lax.fori_loop(0, steps, body, (m0, h0))[1]


# -- the transform's plumbing ---------------------------------------------------


def refresh_every(count: jax.Array, period: int, compute: Callable[[], Any], current: Any) -> Any:
  """``compute()`` on the steps ``count`` that are multiples of ``period``, else ``current``.

  ``period = 1`` computes at every step, without a ``lax.cond``.
  """
  if period == 1:
    return compute()
  return jax.lax.cond(count % period == 0, lambda _: compute(), lambda _: current, None)


def map_leaves(leaf: Callable, updates: optax.Updates, state: NamedTuple, count: jax.Array):
  """``(updates', state')`` from ``leaf(g, *state_leaves) -> (g', *new_state_leaves)``.

  ``state`` is a ``NamedTuple`` whose first field is the step count and whose other fields
  are trees shaped like ``updates``; ``state'`` holds ``count`` and the new trees.
  """
  flat, treedef = jax.tree.flatten(updates)
  rest = [treedef.flatten_up_to(t) for t in state[1:]]
  outs = [leaf(*args) for args in zip(flat, *rest, strict=True)]
  if not outs:
    return updates, state._replace(count=count)
  out, *new = (treedef.unflatten(list(c)) for c in zip(*outs, strict=True))
  return out, type(state)(count, *new)
