"""Matrix views of parameters: which axes of a leaf are its fan-in, fan-out, stack and taps.

A matrix norm reads a leaf ``(..., fan_in, fan_out)``: its last two axes are the
matrix and leading axes a stack of independent matrices. Real kernels are often
laid out otherwise: an attention query kernel ``(d_model, heads, head_dim)``
maps ``d_model`` to ``heads·head_dim`` (fan-in axis 0, fan-out axes 1 and 2),
an output projection ``(heads, head_dim, d_model)`` has two fan-in axes, an
``nnx.Einsum`` head ``(vocab, d)`` is stored transposed, a conv kernel has
spatial taps. :class:`MatrixView` names the axes; :func:`with_matrix_view`
runs a transform on every leaf in its view's *matrix layout*::

  stack axes + [blocks] + spatial axes + (fan_in, fan_out)

(each group of axes flattened to one, the stack and spatial axes kept as they
are) and puts the result back. ``optax.contrib.MuonDimensionNumbers`` (reduction
axes = fan-in, output axes = fan-out, the rest a stack) is accepted wherever a
view is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers

from normax._leafwise import broadcast_spec, leaf_paths

Axes = tuple[int, ...]


def _as_axes(value: Any, what: str) -> Axes | None:
  if value is None:
    return None
  if isinstance(value, bool):
    raise TypeError(f"MatrixView {what} must be an int or a tuple of ints, got {value!r}.")
  if isinstance(value, int):
    return (value,)
  try:
    axes = tuple(value)
  except TypeError:
    axes = None
  if axes is None or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
    raise TypeError(f"MatrixView {what} must be an int or a tuple of ints, got {value!r}.")
  return axes


def _size(shape, axes) -> int:
  return math.prod(shape[a] for a in axes)


def _group(shape, axes) -> str:
  sizes = [str(shape[a]) for a in axes]
  if not sizes:
    return "1"
  return sizes[0] if len(sizes) == 1 else "(" + "·".join(sizes) + ")"


@dataclasses.dataclass(frozen=True)
class MatrixView:
  r"""Which axes of a parameter form its matrix (fan-in, fan-out), and which are a stack.

  A dense kernel maps its fan-in axes to its fan-out axes; every other axis is
  a *stack* of independent matrices (scanned layers, experts, heads) unless it
  is a *spatial* (tap) axis of a convolution kernel. Axes may be negative
  (counted from the end), so one view can serve a leaf with or without a
  leading layer axis.

  ===================================  ====================  ====================================
  parameter                            shape                 view
  ===================================  ====================  ====================================
  ``nnx.Linear`` / ``Dense`` kernel    ``(d_in, d_out)``     ``MatrixView(-2, -1)``
  scanned stack of them                ``(layers, d, d)``    ``MatrixView(-2, -1)``
  ``nnx.MultiHeadAttention`` q/k/v     ``(d, heads, hd)``    ``MatrixView(0, (1, 2))``
  the same, one matrix per head        ``(d, heads, hd)``    ``MatrixView(0, 2, stack=1)``
  its output projection                ``(heads, hd, d)``    ``MatrixView((0, 1), 2)``
  ``nnx.Einsum`` head ``btd,vd->btv``  ``(vocab, d)``        ``MatrixView(1, 0)``
  2-D conv kernel (HWIO)               ``(3, 3, c_i, c_o)``  ``MatrixView(2, 3, spatial=(0, 1))``
  fused QKV kernel                     ``(d, 3·d)``          ``MatrixView(0, 1, blocks=3)``
  ===================================  ====================  ====================================

  :func:`normax.infer_roles` reads every parameter's view from the model's
  computation; a :class:`normax.Rule` can state one by hand.

  In the view's *matrix layout* a leaf is transposed and reshaped to
  ``stack + [blocks] + spatial + (fan_in, fan_out)`` (fan-in and fan-out
  axes each flattened to one; the stack axes in the order given; with
  ``blocks = k`` the fan-out axis cut into ``k`` equal blocks that join the
  stack). A view with no fan-in axes is a stack of vectors (biases, gains):
  ``stack + (fan_out,)``.

  Args:
    fan_in: The input axis or axes (contracted with the activations).
    fan_out: The output axis or axes.
    stack: Axes of independent matrices; ``None`` (default): every axis not
      in ``fan_in``, ``fan_out`` or ``spatial``, in increasing order.
    spatial: The spatial (tap) axes of a convolution kernel.
    blocks: Cut the fan-out axis into this many equal blocks, each its own
      matrix (the three parts of a fused QKV kernel).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> view = normax.MatrixView(fan_in=0, fan_out=(1, 2))  # nnx.MultiHeadAttention's query
    >>> view.matrix_shape((512, 8, 64)), view.describe((512, 8, 64))
    ((512, 512), '512 × (8·64)')
    >>> per_head = normax.MatrixView(fan_in=0, fan_out=2, stack=1)
    >>> per_head.matrix_shape((512, 8, 64)), per_head.describe((512, 8, 64))
    ((8, 512, 64), '8 × [512 × 64]')
    >>> x = jnp.arange(24.0).reshape(4, 2, 3)
    >>> bool((per_head.back(per_head.to(x), x.shape) == x).all())
    True
  """

  fan_in: int | Axes
  fan_out: int | Axes
  stack: int | Axes | None = None
  spatial: int | Axes = ()
  blocks: int = 1

  def __post_init__(self):
    for name in ("fan_in", "fan_out", "stack", "spatial"):
      object.__setattr__(self, name, _as_axes(getattr(self, name), name))
    if not self.fan_out:
      raise ValueError("A MatrixView needs at least one fan_out axis.")
    if self.spatial and not self.fan_in:
      raise ValueError("A MatrixView with spatial axes needs a fan_in axis (c_in).")
    if not isinstance(self.blocks, int) or isinstance(self.blocks, bool) or self.blocks < 1:
      raise ValueError(f"MatrixView blocks must be an int >= 1, got {self.blocks!r}.")
    if self.blocks > 1 and not self.fan_in:
      raise ValueError("MatrixView blocks cut a matrix's fan-out axis; this view has no fan_in.")

  @classmethod
  def from_dimension_numbers(cls, dims: MuonDimensionNumbers, blocks: int = 1) -> MatrixView:
    """The view of ``optax.contrib.MuonDimensionNumbers``: reduction = fan-in, output = fan-out."""
    return cls(dims.reduction_axis, dims.output_axis, blocks=blocks)

  # -- axes -----------------------------------------------------------------------------------

  def resolve(self, ndim: int) -> tuple[Axes, Axes, Axes, Axes]:
    """``(stack, spatial, fan_in, fan_out)`` for a leaf of rank ``ndim``, non-negative.

    Raises:
      ValueError: if an axis is out of range, named twice, or (with an explicit
        ``stack``) some axis is in no group.
    """
    groups = {}
    for name in ("spatial", "fan_in", "fan_out"):
      axes = getattr(self, name)
      if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"{self} has {name} axes {axes} out of range for a rank-{ndim} leaf.")
      groups[name] = tuple(a % ndim for a in axes)
    named = groups["spatial"] + groups["fan_in"] + groups["fan_out"]
    if self.stack is None:
      stack = tuple(a for a in range(ndim) if a not in named)
    else:
      if any(not -ndim <= a < ndim for a in self.stack):
        raise ValueError(f"{self} has stack axes {self.stack} out of range for rank {ndim}.")
      stack = tuple(a % ndim for a in self.stack)
    every = stack + named
    if len(set(every)) != len(every):
      raise ValueError(f"{self} names an axis twice for a rank-{ndim} leaf.")
    if len(every) != ndim:
      missing = sorted(set(range(ndim)) - set(every))
      raise ValueError(
        f"{self} leaves axes {missing} of a rank-{ndim} leaf in no group; list them in stack."
      )
    return stack, groups["spatial"], groups["fan_in"], groups["fan_out"]

  def check(self, shape: tuple[int, ...], path: str | None = None) -> None:
    """Raises a ``ValueError`` naming ``path`` if this view does not fit ``shape``."""
    where = f" at {path!r}" if path else ""
    try:
      _, _, _, fan_out = self.resolve(len(shape))
    except ValueError as e:
      raise ValueError(f"{e} The leaf{where} has shape {tuple(shape)}.") from None
    if _size(shape, fan_out) % self.blocks:
      raise ValueError(
        f"The blocks (output_blocks={self.blocks}) of {self} do not divide the fan-out size"
        f" {_size(shape, fan_out)} of the leaf{where} (shape {tuple(shape)}). Give a block"
        " count that divides it, e.g. the number of heads or 3 for a fused QKV kernel."
      )

  def is_default(self, ndim: int) -> bool:
    """Whether the view is the plain one: the last two axes, leading axes a stack in order."""
    if ndim < 2:
      return False
    stack, spatial, fan_in, fan_out = self.resolve(ndim)
    return (
      fan_in == (ndim - 2,)
      and fan_out == (ndim - 1,)
      and not spatial
      and stack == tuple(range(ndim - 2))
      and self.blocks == 1
    )

  def matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The leaf's shape in the matrix layout ``stack + [blocks] + spatial + (fan_in, fan_out)``."""
    shape = tuple(shape)
    stack, spatial, fan_in, fan_out = self.resolve(len(shape))
    out = [shape[a] for a in stack]
    if self.blocks > 1:
      out.append(self.blocks)
    out += [shape[a] for a in spatial]
    if fan_in:
      out.append(_size(shape, fan_in))
    out.append(_size(shape, fan_out) // self.blocks)
    return tuple(out)

  def stack_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the stack of matrices (one entry per matrix): ``stack + [blocks]``."""
    stack = self.resolve(len(shape))[0]
    return tuple(shape[a] for a in stack) + ((self.blocks,) if self.blocks > 1 else ())

  def merge_spatial(self) -> MatrixView:
    """The view with the spatial axes moved into the fan-in (a conv kernel as one matrix
    ``(taps·c_in, c_out)``, as Muon reads it)."""
    if not self.spatial:
      return self
    return MatrixView(self.spatial + self.fan_in, self.fan_out, self.stack, (), self.blocks)

  def describe(self, shape: tuple[int, ...]) -> str:
    """The view as text: ``'512 × (8·64)'``; a stack in front, ``'8 × [512 × 64]'``; a conv
    kernel's taps, ``'3·3 taps of [64 × 128]'``."""
    shape = tuple(shape)
    stack, spatial, fan_in, fan_out = self.resolve(len(shape))
    if not fan_in:
      text = f"vector {_group(shape, fan_out)}"
    else:
      out = _group(shape, fan_out)
      if self.blocks > 1:
        out = f"{out}/{self.blocks}"
      text = f"{_group(shape, fan_in)} × {out}"
    if spatial:
      text = f"{'·'.join(str(shape[a]) for a in spatial)} taps of [{text}]"
    lead = [shape[a] for a in stack] + ([self.blocks] if self.blocks > 1 else [])
    if lead:
      text = f"{'·'.join(map(str, lead))} × [{text}]"
    return text

  # -- moving a leaf to its matrix layout and back ------------------------------------------

  def _plan(self, shape):
    stack, spatial, fan_in, fan_out = self.resolve(len(shape))
    perm = stack + spatial + fan_in + fan_out
    lead = [shape[a] for a in stack + spatial]
    split = lead + ([_size(shape, fan_in)] if fan_in else [])
    split += [self.blocks, _size(shape, fan_out) // self.blocks]
    return perm, split, len(stack)

  def to(self, x: jax.Array) -> jax.Array:
    """``x`` in the matrix layout (see :meth:`matrix_shape`)."""
    if self.is_default(x.ndim):
      return x
    perm, split, n_stack = self._plan(x.shape)
    y = x.transpose(perm).reshape(split)
    block_axis = len(split) - 2
    return _move(y, block_axis, n_stack, self.blocks)

  def back(self, y: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :meth:`to` for a leaf of ``shape``."""
    shape = tuple(shape)
    if self.is_default(len(shape)):
      return y
    perm, split, n_stack = self._plan(shape)
    block_axis = len(split) - 2
    if self.blocks > 1:
      y = jax.numpy.moveaxis(y, n_stack, block_axis)
    y = y.reshape([shape[a] for a in perm])
    inverse = tuple(sorted(range(len(shape)), key=lambda i: perm[i]))
    return y.transpose(inverse)


def _move(y, block_axis: int, n_stack: int, blocks: int):
  """Moves the blocks axis in front of the spatial and matrix axes (dropped when 1)."""
  if blocks > 1:
    return jax.numpy.moveaxis(y, block_axis, n_stack)
  return y.reshape(y.shape[:block_axis] + y.shape[block_axis + 1 :])


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


def _is_view(x: Any) -> bool:
  return isinstance(x, MatrixView | MuonDimensionNumbers)


def matrix_views(tree: Any, views: Any = None, blocks: Any = None) -> list[MatrixView | None]:
  """One :class:`MatrixView` (or ``None``: the leaf as it is) per leaf of ``tree``.

  ``views`` and ``blocks`` are as for :func:`with_matrix_view`; each view is checked
  against its leaf's shape (errors name the path).
  """
  specs = broadcast_spec(views, tree, is_spec=_is_view, what="matrix view", allow_callable=True)
  is_block = lambda x: isinstance(x, int | jax.Array) and not isinstance(x, bool)  # noqa: E731
  nblocks = broadcast_spec(
    blocks, tree, is_spec=is_block, what="output_blocks", allow_callable=True
  )
  out = []
  leaves = jax.tree.leaves(tree)
  for spec, k, path, leaf in zip(specs, nblocks, leaf_paths(tree), leaves, strict=True):
    if spec is not None and not _is_view(spec):
      raise TypeError(
        f"Expected a normax.MatrixView, optax.contrib.MuonDimensionNumbers or None at {path!r},"
        f" got {spec!r}."
      )
    k = _static_block(k, path)
    shape = tuple(leaf.shape)
    if spec is None and k == 1:
      out.append(None)
      continue
    if len(shape) < 2 and (spec is None or isinstance(spec, MuonDimensionNumbers)):
      raise ValueError(
        f"A matrix view needs a leaf of rank >= 2; got shape {shape} at {path!r}. Route it to"
        " another transform (label it 'adam' in normax.muon)."
      )
    if spec is None:
      spec = MatrixView(-2, -1)
    elif isinstance(spec, MuonDimensionNumbers):
      spec = MatrixView.from_dimension_numbers(spec)
    if k != 1:
      spec = dataclasses.replace(spec, blocks=k)
    spec.check(shape, path)
    out.append(spec)
  return out


def with_matrix_view(
  inner: optax.GradientTransformation, views: Any = None, *, blocks: Any = None
) -> optax.GradientTransformation:
  r"""Runs ``inner`` on each leaf in its matrix layout, and puts the result back.

  Each leaf (updates, and params when given) with a view is moved to the
  view's matrix layout ``stack + [blocks] + spatial + (fan_in, fan_out)``
  (:class:`normax.MatrixView`); ``inner``'s output is moved back. Leaves
  without a view pass as they are (their last two axes are already the
  matrix, leading axes a stack). ``inner``'s state is built on the matrix
  layouts.

  Args:
    inner: The transform to run (e.g. :func:`normax.scale_by_lmo`).
    views: A :class:`normax.MatrixView` or ``optax.contrib.MuonDimensionNumbers``
      for every leaf, a pytree of them (or a prefix; ``None`` leaves keep their
      layout), or a callable ``params -> such a pytree``.
    blocks: Number of blocks of each leaf's fan-out axis: an int for every
      leaf, a pytree of ints or ``None`` (or a prefix), or a callable; it
      overrides the views' own ``blocks``. E.g. ``3`` for a fused QKV kernel
      ``(d, 3d)``.

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
    >>> query = jax.random.normal(jax.random.key(1), (16, 4, 8))  # (d, heads, head_dim)
    >>> tx = normax.with_matrix_view(normax.scale_by_lmo(normax.Spectral(method="svd")),
    ...                              normax.MatrixView(fan_in=0, fan_out=(1, 2)))
    >>> m = tx.update(query, tx.init(query))[0].reshape(16, 32)  # one 16 × 32 matrix
    >>> bool(jnp.allclose(m @ m.T, 2 * jnp.eye(16), atol=1e-4))  # √(32/16)² · I
    True

  References:
    ``optax.contrib.MuonDimensionNumbers`` (optax 0.2.6+); Jordan et al.,
    *modded-nanogpt* (per-head orthogonalization of attention weights).
  """

  def apply(views_, tree, fn):
    flat, treedef = jax.tree.flatten(tree)
    pairs = zip(views_, flat, strict=True)
    return treedef.unflatten([x if v is None else fn(v, x) for v, x in pairs])

  def init_fn(params):
    return inner.init(apply(matrix_views(params, views, blocks), params, lambda v, x: v.to(x)))

  def update_fn(updates, state, params=None):
    found = matrix_views(updates, views, blocks)
    to = lambda v, x: v.to(x)  # noqa: E731
    p = None if params is None else apply(found, params, to)
    out, state = inner.update(apply(found, updates, to), state, p)
    shapes = [x.shape for x in jax.tree.leaves(updates)]
    flat, treedef = jax.tree.flatten(out)
    back = [x if v is None else v.back(x, s) for v, x, s in zip(found, flat, shapes, strict=True)]
    return treedef.unflatten(back), state

  return optax.GradientTransformation(init_fn, update_fn)


__all__ = ["MatrixView", "MuonDimensionNumbers", "matrix_views", "with_matrix_view"]
