"""Matrix views of parameters: which axes form the matrix, and blocks of the output axis.

Muon-style updates act on matrices ``(fan_in, fan_out)``. A parameter that is
not laid out as ``(..., fan_in, fan_out)`` (a conv kernel to be read as one
``(k·c_in, c_out)`` matrix, an attention kernel ``(d, heads, head_dim)``) is
described by ``optax.contrib.MuonDimensionNumbers``: the reduction (fan-in)
axes, the output (fan-out) axes, every other axis a batch. A fused QKV kernel,
or one whose output axis holds the heads side by side, can be split into
``blocks`` along its output axis, each block its own matrix.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers

from normax._leafwise import broadcast_spec, leaf_paths


def _axes(axes, ndim: int) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(a % ndim for a in axes)


class _View:
  """Reshapes one leaf to ``(batch, fan_in, fan_out)`` matrices and back."""

  def __init__(self, shape, dims: MuonDimensionNumbers | None, blocks: int, path: str):
    self.shape = tuple(shape)
    ndim = len(shape)
    where = f" at {path!r}" if path else ""
    if ndim < 2:
      raise ValueError(
        f"A matrix view needs a leaf of rank >= 2; got shape {self.shape}{where}. Route it to"
        " another transform (label it 'adam' in normax.muon)."
      )
    if dims is None:
      self.identity = blocks == 1
      red, out = (ndim - 2,), (ndim - 1,)
    else:
      self.identity = False
      red, out = _axes(dims.reduction_axis, ndim), _axes(dims.output_axis, ndim)
      if not red or not out or set(red) & set(out):
        raise ValueError(
          f"Dimension numbers {dims} for shape {self.shape}{where}: reduction and output axes"
          " must be non-empty and disjoint."
        )
    batch = tuple(a for a in range(ndim) if a not in red and a not in out)
    self.perm = batch + red + out
    self.inverse = tuple(sorted(range(ndim), key=lambda i: self.perm[i]))
    size = lambda axes: math.prod(shape[a] for a in axes)  # noqa: E731
    self.permuted = tuple(shape[a] for a in self.perm)
    b, fan_in, fan_out = size(batch), size(red), size(out)
    if fan_out % blocks:
      raise ValueError(
        f"output_blocks={blocks} does not divide the output size {fan_out} of the leaf"
        f"{where} (shape {self.shape}). Give a block count that divides it, e.g. the number of"
        " heads or 3 for a fused QKV kernel."
      )
    self.blocks = blocks
    self.split = (b, fan_in, blocks, fan_out // blocks)
    self.fan_in, self.fan_out = fan_in, fan_out // blocks

  def to(self, x: jax.Array) -> jax.Array:
    if self.identity:
      return x
    x = x.transpose(self.perm).reshape(self.split)
    return x.transpose(0, 2, 1, 3).reshape(-1, self.fan_in, self.fan_out)

  def back(self, x: jax.Array) -> jax.Array:
    if self.identity:
      return x
    b, fan_in, k, bs = self.split
    x = x.reshape(b, k, fan_in, bs).transpose(0, 2, 1, 3)
    return x.reshape(self.permuted).transpose(self.inverse)


def _static_block(value: Any, path: str) -> int:
  if value is None:
    return 1
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
      f"output_blocks at {path!r} is traced (an injected hyperparameter?); it sets a shape,"
      " so make it static: optax.inject_hyperparams(normax.muon,"
      " static_args=('output_blocks',))."
    )
  if int(value) != value or int(value) < 1:
    raise ValueError(f"output_blocks at {path!r} must be a positive int, got {value!r}.")
  return int(value)


def matrix_views(tree: Any, dimension_numbers: Any = None, blocks: Any = None) -> list[_View]:
  """One view per leaf of ``tree`` (see :func:`with_matrix_view` for the arguments)."""
  is_dims = lambda x: isinstance(x, MuonDimensionNumbers)  # noqa: E731
  dims = broadcast_spec(
    dimension_numbers, tree, is_spec=is_dims, what="dimension numbers", allow_callable=True
  )
  is_block = lambda x: isinstance(x, int | jax.Array) and not isinstance(x, bool)  # noqa: E731
  nblocks = broadcast_spec(
    blocks, tree, is_spec=is_block, what="output_blocks", allow_callable=True
  )
  paths = leaf_paths(tree)
  out = []
  for d, k, path, leaf in zip(dims, nblocks, paths, jax.tree.leaves(tree), strict=True):
    if d is not None and not is_dims(d):
      raise TypeError(
        f"Expected optax.contrib.MuonDimensionNumbers or None at {path!r}, got {d!r}."
      )
    out.append(_View(leaf.shape, d, _static_block(k, path), path))
  return out


def with_matrix_view(
  inner: optax.GradientTransformation, dimension_numbers: Any = None, *, blocks: Any = None
) -> optax.GradientTransformation:
  r"""Runs ``inner`` on each leaf reshaped to a stack of ``(fan_in, fan_out)`` matrices.

  Each leaf (updates, and params when given) is transposed to
  ``batch + reduction + output`` axes and reshaped to
  ``(batch, fan_in, fan_out)``, as ``optax.contrib.muon`` does; with
  ``blocks = k`` the output axis is then cut into ``k`` equal blocks, each a
  matrix of its own: ``(batch·k, fan_in, fan_out/k)``. ``inner``'s output is
  reshaped back. A leaf with neither dimension numbers nor blocks is passed
  as is (its last two axes are already the matrix, leading axes a batch).
  ``inner``'s state is built on the views.

  Args:
    inner: The transform to run on the views (e.g. :func:`normax.scale_by_lmo`).
    dimension_numbers: ``optax.contrib.MuonDimensionNumbers`` (also exported
      as ``normax.MuonDimensionNumbers``) for every leaf, a pytree of them
      (or a prefix; ``None`` leaves keep the default view), or a callable
      ``params -> such a pytree``.
    blocks: Number of blocks of each leaf's output axis: an int for every
      leaf, a pytree of ints or ``None`` (or a prefix), or a callable. E.g.
      ``3`` for a fused QKV kernel ``(d, 3d)``, the number of heads for a
      kernel whose output axis holds the heads side by side.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> qkv = jax.random.normal(jax.random.key(0), (8, 24))  # fused (d, 3d) kernel
    >>> tx = normax.with_matrix_view(normax.scale_by_lmo(normax.Spectral(method="svd")), blocks=3)
    >>> u, _ = tx.update(qkv, tx.init(qkv))
    >>> q = u[:, :8]  # the query block is a scaled orthogonal matrix of its own
    >>> bool(jnp.allclose(q.T @ q, jnp.eye(8), atol=1e-4))
    True
    >>> conv = jnp.ones((3, 3, 4, 16))  # one (36, 16) matrix
    >>> dims = normax.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)
    >>> tx = normax.with_matrix_view(normax.scale_by_lmo("spectral"), dims)
    >>> tx.update(conv, tx.init(conv))[0].shape
    (3, 3, 4, 16)

  References:
    ``optax.contrib.MuonDimensionNumbers`` (optax 0.2.6+); Jordan et al.,
    *modded-nanogpt* (per-head orthogonalization of attention weights).
  """

  def views_of(tree):
    return matrix_views(tree, dimension_numbers, blocks)

  def apply(views, tree, fn):
    flat, treedef = jax.tree.flatten(tree)
    return treedef.unflatten([fn(v, x) for v, x in zip(views, flat, strict=True)])

  def init_fn(params):
    return inner.init(apply(views_of(params), params, lambda v, x: v.to(x)))

  def update_fn(updates, state, params=None):
    views = views_of(updates)
    to = lambda v, x: v.to(x)  # noqa: E731
    p = None if params is None else apply(views, params, to)
    out, state = inner.update(apply(views, updates, to), state, p)
    return apply(views, out, lambda v, x: v.back(x)), state

  return optax.GradientTransformation(init_fn, update_fn)


__all__ = ["MuonDimensionNumbers", "matrix_views", "with_matrix_view"]
