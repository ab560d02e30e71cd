"""Norms with closed-form LMOs: sign, row/column ℓp balls, RMS and Frobenius.

A matrix leaf is the operator ``x ↦ x @ W`` with ``W`` of shape
``(..., fan_in, fan_out)``; "row i" is ``W[..., i, :]`` (the image of input
basis vector ``e_i``), "column j" is ``W[..., :, j]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from normax._base import (
  Norm,
  clip_onto,
  compute_dtype,
  l2_norm,
  rescale_onto,
  scaled_by_max,
  scaled_sum,
  unit_l2,
  where_nonzero,
)
from normax._checks import EXPONENT, check_args


def _nan_where_inf(g: jax.Array, out: jax.Array) -> jax.Array:
  """Keeps ±inf in ``g`` visible as NaN in an output that would hide it."""
  return jnp.where(jnp.isinf(g), jnp.nan, out)


def _lp_norm(x: jax.Array, p: float, axis: int) -> jax.Array:
  """ℓp norm along ``axis`` (keepdims), scaled so that no power overflows."""
  a = jnp.abs(x)
  if p == math.inf:
    return jnp.max(a, axis=axis, keepdims=True)
  if p == 1:
    return jnp.sum(a, axis=axis, keepdims=True)
  if p == 2:
    return l2_norm(a, axis)
  r, m = scaled_by_max(a, axis)
  return m * jnp.sum(r**p, axis=axis, keepdims=True) ** (1.0 / p)


def _lp_dual_maximizer(g: jax.Array, q: float, axis: int) -> jax.Array:
  """``argmax ⟨g, t⟩`` over ``‖t‖_{q*} ≤ 1`` along ``axis``, with ``q`` the
  exponent of the *dual* norm (the norm of ``g``): ``⟨g, t⟩ = ‖g‖_q``."""
  if q == 1:  # ball of ℓ∞: the sign vector.
    return _nan_where_inf(g, jnp.sign(g))
  if q == 2:
    return unit_l2(g, axis)
  a = jnp.abs(g)
  m = jnp.max(a, axis=axis, keepdims=True, initial=0)
  if q == math.inf:  # ball of ℓ1: one signed vertex at the largest entry.
    idx = jnp.argmax(a, axis=axis, keepdims=True)
    onehot = (
      jnp.arange(g.shape[axis]).reshape([-1 if i == axis % g.ndim else 1 for i in range(g.ndim)])
      == idx
    )
    return jnp.where(onehot, jnp.sign(g), 0) + 0 * m  # 0 * m keeps NaN/inf visible.
  r, _ = scaled_by_max(a, axis)
  t = jnp.sign(g) * r ** (q - 1)
  return where_nonzero(_lp_norm(r, q, axis) ** (q - 1), t)


def _scale_first(x: jax.Array, scale: float) -> tuple[jax.Array, float]:
  """``(x·scale, 1)`` for ``scale < 1``: a per-row norm that overflows only before the
  factor (16 entries of 2e38) is then finite, as the result is. ``(x, scale)`` otherwise."""
  return (x * scale, 1.0) if scale < 1 else (x, scale)


def _conjugate(p: float) -> float:
  if p == 1:
    return math.inf
  if p == math.inf:
    return 1.0
  return p / (p - 1)


@dataclasses.dataclass(frozen=True)
class Sign(Norm):
  r"""The max-of-max (ℓ∞-type) norm whose LMO is sign descent.

  ``Sign()`` (normalized, Scion's default for output heads) is the ℓ∞→ℓ∞
  operator norm through its bound ``d_in · ‖W‖_max``:
  ``dualize(G) = sign(G) / d_in``, ``dual_norm(G) = ‖G‖₁ / d_in``,
  ``norm(W) = d_in · ‖W‖_max`` with ``d_in = fan_in = W.shape[-2]``.

  ``Sign(normalized=False)`` (embedding tables) is the ℓ1→ℓ∞ operator norm
  ``‖W‖_max``: ``dualize(G) = sign(G)``, ``dual_norm(G) = ‖G‖₁``. It is
  elementwise, so it also takes vectors and scalars.

  ``Sign(transpose=True)`` reads a matrix stored ``(fan_out, fan_in)``, so
  ``d_in = W.shape[-1]``: a tied embedding table ``(vocab, features)`` that
  is also the output head (``x ↦ x @ Eᵀ``, Flax ``Embed.attend``) gets the
  head's ``sign(G) / features``. ``zero_init=True`` makes :meth:`init`
  return zeros (the Scion code's option for output heads) instead of a
  point on the unit sphere.

  Adam with both moving averages switched off is sign descent (Bernstein &
  Newhouse, 2024, Sec. 3.1).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.Sign().dualize(jnp.array([[1.0, -2.0], [0.0, 3.0]]))
    Array([[ 0.5, -0.5],
           [ 0. ,  0.5]], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Table 2 ("Sign").
  """

  normalized: bool = True
  transpose: bool = False
  zero_init: bool = False
  name = "sign"
  low_rank_hint = "normax.Sign(normalized=False) or normax.BiasRMS()"

  @property
  def min_ndim(self) -> int:
    return 2 if self.normalized else 0

  def core_ndim(self, ndim: int) -> int:
    return min(ndim, 2)

  def fan_in(self, shape: tuple[int, ...]) -> int:
    """``d_in`` of a matrix leaf of this ``shape``: ``shape[-2]`` (``shape[-1]`` transposed)."""
    return shape[-1] if self.transpose else shape[-2]

  def _scale(self, x: jax.Array) -> float:
    return 1.0 / self.fan_in(x.shape) if self.normalized else 1.0

  def init(self, key, shape, dtype=jnp.float32):
    if self.zero_init:
      self.check(tuple(shape), dtype)
      return jnp.zeros(shape, dtype)
    return super().init(key, shape, dtype)

  def dualize(self, g):
    return (_nan_where_inf(g, jnp.sign(g)) * self._scale(g)).astype(g.dtype)

  def dual_norm(self, g):
    axes = self.core_axes(g.ndim)
    return scaled_sum(jnp.abs(g.astype(compute_dtype(g))), axes, self._scale(g))

  def norm(self, w):
    axes = self.core_axes(w.ndim)
    return jnp.max(jnp.abs(w.astype(compute_dtype(w))), axis=axes) / self._scale(w)

  def project(self, w, radius, sphere=False):
    """Entries clipped to ``±radius/d_in`` (``±radius`` unnormalized), the nearest point.

    On the sphere: ``radius/d_in · sign(w)``.
    """
    return clip_onto(w, radius / self.fan_in(w.shape) if self.normalized else radius, sphere)


class _SliceL2(Norm):
  """ColNorm and RowNorm: each slice of the ``(d_in, d_out)`` view scaled to one ℓ2 length.

  A slice is a row (``axis = -1``, :class:`ColNorm`) or a column (``axis = -2``,
  :class:`RowNorm`) of the leaf read as ``(..., d_in, d_out)`` (swapped first if
  ``transpose``). ``dualize(G)`` scales each slice to the ℓ2 length ``s = num / den`` of
  :meth:`_length`; ``dual_norm(G) = s · Σ ‖slice‖₂`` and ``norm(W) = max ‖slice‖₂ / s``.
  """

  axis: ClassVar[int]

  def _length(self, d_in: int, d_out: int) -> tuple[float, float]:
    """``(num, den)``: the ℓ2 length ``num / den`` of a slice of ``dualize(g)``."""
    raise NotImplementedError

  def _view(self, x: jax.Array) -> tuple[jax.Array, float]:
    """The leaf as ``(..., d_in, d_out)`` in the compute dtype, and a slice's ℓ2 length."""
    x = x.astype(compute_dtype(x))
    if self.transpose:
      x = jnp.swapaxes(x, -1, -2)
    num, den = self._length(*x.shape[-2:])
    return x, num / den

  def _slice_norms(self, x: jax.Array) -> jax.Array:
    return jnp.squeeze(_lp_norm(x, 2, self.axis), self.axis)

  def dualize(self, g):
    x, scale = self._view(g)
    out = scale * unit_l2(x, self.axis)
    return (jnp.swapaxes(out, -1, -2) if self.transpose else out).astype(g.dtype)

  def dual_norm(self, g):
    x, scale = self._view(g)
    x, scale = _scale_first(x, scale)
    return scaled_sum(self._slice_norms(x), -1, scale)

  def norm(self, w):
    x, scale = self._view(w)
    return jnp.max(self._slice_norms(x), axis=-1) / scale

  def project(self, w, radius, sphere=False):
    """Each slice scaled to ``‖·‖₂ ≤ radius · s``, the nearest point of the ball.

    ``s`` is the ℓ2 length of a slice of ``dualize(g)``: for :class:`ColNorm` each row
    ``i`` of the ``(d_in, d_out)`` view gets ``s = √d_out`` (``/d_in`` as well if
    ``normalized``), for :class:`RowNorm` each column ``j`` gets ``s = 1/√d_in``
    (``1`` if not ``normalized``). Sphere: each slice scaled onto it.
    """
    axis = -3 - self.axis if self.transpose else self.axis  # The slice axis as stored.
    d_in, d_out = (w.shape[-1], w.shape[-2]) if self.transpose else w.shape[-2:]
    num, den = self._length(d_in, d_out)
    return rescale_onto(w, l2_norm(w, axis), radius * num / den, sphere)


@dataclasses.dataclass(frozen=True)
class ColNorm(_SliceL2):
  r"""ℓ1→RMS operator norm (Scion's ``ColNorm``), for one-hot inputs.

  Normalizes each row ``i`` of a ``(vocab, features)`` table ``W[..., i, :]``
  (the embedding of token ``i``; a *column* of the operator in ``d_out × d_in``
  notation, hence the name) to RMS 1:
  ``dualize(G)_i = √d_out · G_i / ‖G_i‖₂``,
  ``dual_norm(G) = √d_out · Σ_i ‖G_i‖₂``, ``norm(W) = max_i ‖W_i‖₂ / √d_out``.

  ``ColNorm(normalized=True)`` (the Scion code's option for non-input
  layers) divides the direction by ``d_in`` as well: rows of RMS ``1/d_in``,
  so ``dual_norm`` gains the factor ``1/d_in`` and ``norm`` the factor
  ``d_in``. ``transpose=True`` reads a matrix stored ``(fan_out, fan_in)``
  (normalizing ``W[..., :, i]`` instead).

  Args:
    normalized: Also divide by ``d_in``.
    transpose: The leaf is stored ``(..., fan_out, fan_in)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.ColNorm().dualize(jnp.array([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    Array([[2., 0., 0., 0.],
           [0., 0., 0., 0.]], dtype=float32)

  References:
    Pethick et al., 2025, Table 2 ("ColNorm").
  """

  normalized: bool = False
  transpose: bool = False
  name = "colnorm"
  axis = -1

  def _length(self, d_in, d_out):
    return math.sqrt(d_out), (d_in if self.normalized else 1)


@dataclasses.dataclass(frozen=True)
class RowNorm(_SliceL2):
  r"""RMS→ℓ∞ operator norm (Scion's ``RowNorm``).

  Normalizes each column ``j`` of a ``(fan_in, fan_out)`` kernel
  ``W[..., :, j]`` (the weights into output unit ``j``):
  ``dualize(G)_{·j} = G_{·j} / (√d_in ‖G_{·j}‖₂)``,
  ``dual_norm(G) = Σ_j ‖G_{·j}‖₂ / √d_in``, ``norm(W) = √d_in · max_j ‖W_{·j}‖₂``.

  ``RowNorm(normalized=False)`` (the Scion code's option for input layers)
  drops the ``1/√d_in``: unit-ℓ2 columns, ``LpToLinf(2)``. ``transpose=True``
  reads a matrix stored ``(fan_out, fan_in)``.

  Args:
    normalized: Divide by ``√d_in`` (the RMS→ℓ∞ geometry).
    transpose: The leaf is stored ``(..., fan_out, fan_in)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.RowNorm().dualize(jnp.array([[3.0], [4.0]])).round(4)
    Array([[0.4243],
           [0.5657]], dtype=float32)

  References:
    Pethick et al., 2025, Table 2 ("RowNorm").
  """

  normalized: bool = True
  transpose: bool = False
  name = "rownorm"
  axis = -2

  def _length(self, d_in, d_out):
    del d_out
    return 1, (math.sqrt(d_in) if self.normalized else 1)


@dataclasses.dataclass(frozen=True)
class BiasRMS(Norm):
  r"""RMS norm of a vector (Scion's ``BiasRMS``), for biases and gains.

  Acts on the last axis (leading axes are a batch, e.g. a scanned stack of
  biases): ``dualize(g) = g / ‖g‖_RMS = √n · g / ‖g‖₂``,
  ``dual_norm(g) = √n · ‖g‖₂``, ``norm(w) = ‖w‖_RMS = ‖w‖₂ / √n``.
  A scalar leaf is a vector of length 1.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.BiasRMS().dualize(jnp.array([3.0, -3.0, 3.0, 3.0]))
    Array([ 1., -1.,  1.,  1.], dtype=float32)

  References:
    Pethick et al., 2025, Table 2 ("BiasRMS").
  """

  name = "bias_rms"

  @property
  def min_ndim(self) -> int:
    return 0

  def core_ndim(self, ndim: int) -> int:
    return min(ndim, 1)

  def dualize(self, g):
    x = g.astype(compute_dtype(g))
    if g.ndim == 0:
      return _nan_where_inf(x, jnp.sign(x)).astype(g.dtype)
    n = g.shape[-1]
    return (math.sqrt(n) * unit_l2(x, -1)).astype(g.dtype)

  def dual_norm(self, g):
    x = g.astype(compute_dtype(g))
    if g.ndim == 0:
      return jnp.abs(x)
    return math.sqrt(g.shape[-1]) * _lp_norm(x, 2, -1)[..., 0]

  def norm(self, w):
    x = w.astype(compute_dtype(w))
    if w.ndim == 0:
      return jnp.abs(x)
    return _lp_norm(x, 2, -1)[..., 0] / math.sqrt(w.shape[-1])

  def project(self, w, radius, sphere=False):
    """Each vector scaled to ``‖w‖₂ ≤ radius·√n`` (a scalar clipped to ``±radius``)."""
    if w.ndim == 0:
      return clip_onto(w, radius, sphere)
    return rescale_onto(w, l2_norm(w, -1), radius * math.sqrt(w.shape[-1]), sphere)


@dataclasses.dataclass(frozen=True)
class Frobenius(Norm):
  r"""Frobenius (ℓ2) norm: normalized gradient descent.

  Acts on the last two axes of a matrix (leading axes are a batch) and on the
  whole of a vector or scalar: ``dualize(G) = G / ‖G‖_F``,
  ``dual_norm(G) = norm(G) = ‖G‖_F``. Self-dual.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.Frobenius().dualize(jnp.array([3.0, 4.0]))
    Array([0.6, 0.8], dtype=float32)
  """

  name = "frobenius"

  @property
  def min_ndim(self) -> int:
    return 0

  def core_ndim(self, ndim: int) -> int:
    return min(ndim, 2)

  def dualize(self, g):
    x = g.astype(compute_dtype(g))
    return unit_l2(x, self.core_axes(x.ndim)).astype(g.dtype)

  def dual_norm(self, g):
    return self.norm(g)

  def norm(self, w):
    x = w.astype(compute_dtype(w))
    size = l2_norm(x, self.core_axes(x.ndim))
    return jnp.reshape(size, x.shape[: x.ndim - self.core_ndim(x.ndim)])

  def project(self, w, radius, sphere=False):
    """Each tensor scaled to ``‖w‖_F ≤ radius``, the nearest point (sphere: onto it)."""
    return rescale_onto(w, l2_norm(w, self.core_axes(w.ndim)), radius, sphere)


class _SliceLp(Norm):
  """The ℓp operator-norm family: the largest norm of a slice (rows or columns).

  ``L1ToLp`` takes rows (``axis=-1``, the slice norm ``ℓp``), ``LpToLinf`` columns
  (``axis=-2``, the slice norm ``ℓp*``). The dual norm sums the slices' dual ℓ norms and
  ``dualize`` maximizes slice by slice; ``slice_p = ∞`` clips and ``2`` rescales in
  :meth:`project`.
  """

  axis: ClassVar[int]

  def __post_init__(self):
    check_args(f"normax.{type(self).__name__}", p=(self.p, EXPONENT))
    object.__setattr__(self, "p", float(self.p))

  @property
  def slice_p(self) -> float:
    """The exponent of each slice's norm in ``norm``."""
    raise NotImplementedError

  @property
  def dual_slice_p(self) -> float:
    """The exponent of each slice's norm in ``dual_norm`` (the conjugate of ``slice_p``)."""
    raise NotImplementedError

  def _slice_norms(self, x, q):
    return jnp.squeeze(_lp_norm(x.astype(compute_dtype(x)), q, self.axis), self.axis)

  def dualize(self, g):
    x = g.astype(compute_dtype(g))
    return _lp_dual_maximizer(x, self.dual_slice_p, self.axis).astype(g.dtype)

  def dual_norm(self, g):
    return scaled_sum(self._slice_norms(g, self.dual_slice_p), -1)

  def norm(self, w):
    return jnp.max(self._slice_norms(w, self.slice_p), axis=-1)

  def project(self, w, radius, sphere=False):
    """Slices of norm ``ℓ∞``: entries clipped to ``±radius``; ``ℓ2``: each slice scaled to
    ``‖·‖₂ ≤ radius``. Other exponents: the radial retraction of :meth:`normax.Norm.project`.
    """
    if self.slice_p == math.inf:
      return clip_onto(w, radius, sphere)
    if self.slice_p == 2:
      return rescale_onto(w, l2_norm(w, self.axis), radius, sphere)
    return super().project(w, radius, sphere)


@dataclasses.dataclass(frozen=True)
class L1ToLp(_SliceLp):
  r"""The ℓ1→ℓp operator norm: the largest ℓp norm of a row.

  For ``x ↦ x @ W`` the image of input basis vector ``e_i`` is row
  ``W[..., i, :]``, so ``‖W‖_{1→p} = max_i ‖W_i‖_p``. Its dual norm is
  ``Σ_i ‖G_i‖_q`` with ``1/p + 1/q = 1``, and ``dualize`` maximizes
  ``⟨G_i, T_i⟩`` over the ℓp unit ball row by row:
  ``T_i = sign(G_i) |G_i|^{q-1} / ‖G_i‖_q^{q-1}`` (``p = ∞``: ``sign(G)``;
  ``p = 1``: a signed one-hot at each row's largest entry).

  ``L1ToLp(inf)`` is ``Sign(normalized=False)``; ``L1ToLp(2)`` is ``ColNorm``
  without its ``√d_out`` RMS scaling.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.L1ToLp(2.0).norm(jnp.array([[3.0, 4.0], [1.0, 0.0]]))
    Array(5., dtype=float32)

  References:
    Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024, Prop. 8.
  """

  p: float = 2.0
  name = "l1_to_lp"
  axis = -1

  @property
  def slice_p(self) -> float:
    return self.p

  @property
  def dual_slice_p(self) -> float:
    return _conjugate(self.p)


@dataclasses.dataclass(frozen=True)
class LpToLinf(_SliceLp):
  r"""The ℓp→ℓ∞ operator norm: the largest dual-ℓp norm of a column.

  ``‖x @ W‖_∞ = max_j |⟨x, W_{·j}⟩| ≤ ‖x‖_p ‖W_{·j}‖_{p*}`` (Hölder, tight),
  so ``‖W‖_{p→∞} = max_j ‖W_{·j}‖_{p*}`` with ``1/p + 1/p* = 1``. Its dual
  norm is ``Σ_j ‖G_{·j}‖_p`` and ``dualize`` maximizes column by column:
  ``T_{·j} = sign(G_{·j}) |G_{·j}|^{p-1} / ‖G_{·j}‖_p^{p-1}``.

  ``LpToLinf(2)`` is ``RowNorm`` without its ``1/√d_in`` RMS scaling;
  ``LpToLinf(1)`` is ``Sign(normalized=False)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.LpToLinf(2.0).norm(jnp.array([[3.0, 1.0], [4.0, 0.0]]))
    Array(5., dtype=float32)

  References:
    Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024, Prop. 8.
  """

  p: float = 2.0
  name = "lp_to_linf"
  axis = -2

  @property
  def slice_p(self) -> float:
    return _conjugate(self.p)

  @property
  def dual_slice_p(self) -> float:
    return self.p
