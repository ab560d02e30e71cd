"""Spectral norms: RMS→RMS operator norm of dense and convolution kernels."""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp

from normax._base import Norm, compute_dtype, describe, scaled_by_max, svd_safe
from normax._checks import COUNT, NONNEGATIVE, POSITIVE_COUNT, check_args
from normax._newton_schulz import orthogonalize_svd
from normax._orthogonalizer import Method, Orthogonalizer, static_key
from normax._sharding import Strategy, with_auto_axes

#: Paths of parameters in a convolution module: the parameter's parent module
#: has "conv" in its name, any case (Linen's ``Conv_0/kernel``, ``conv1/kernel``,
#: ``blocks/conv/kernel``). Shapes alone cannot tell a 1-D conv kernel
#: ``(width, c_in, c_out)`` from a stack of dense kernels ``(layers, d_in, d_out)``.
CONV_PATH = re.compile(r"(?i)(?:.*/)?[^/]*conv[^/]*/[^/]+")


@dataclasses.dataclass(frozen=True)
class Spectral(Norm):
  r"""RMS→RMS operator norm of a dense kernel (Scion's ``Spectral``; Muon).

  For ``W`` of shape ``(..., d_in, d_out)`` (a Flax ``Dense`` kernel; leading
  axes are a batch of independent matrices), with ``G = U Σ Vᵀ``:

  .. math::
    dualize(G) = √(d_out/d_in)·U Vᵀ,

    ‖G‖† = √(d_out/d_in)·Σᵢ σᵢ,

    ‖W‖ = √(d_in/d_out)·σ_max(W).

  A leaf of rank >= 3 in a module whose name contains ``conv`` (any case,
  e.g. ``Conv_0/kernel``) is an error: its leading axes are spatial taps,
  not layers; use :class:`SpectralConv` for it.

  Steepest descent under it is Shampoo without accumulation (Bernstein &
  Newhouse, 2024, Sec. 3.2) and, with momentum, Muon.

  The dimension factor ``s = √(d_out/d_in)`` has the Scion code's variants:
  ``max=True`` takes ``s = max(1, √(d_out/d_in))`` (their choice for the
  input layer of an MLP on pixels, where ``d_in ≫ d_out`` would make the
  steps tiny; it is also Muon's factor), and ``normalized=False`` takes
  ``s = √d_out`` (the ℓ2→RMS geometry). ``dual_norm`` and ``norm`` use the
  same ``s``: ``dualize = s·UVᵀ``, ``dual_norm = s·Σσᵢ``, ``norm = σ_max/s``.

  Args:
    method: ``"gram_newton_schulz"`` (default: the Newton–Schulz polynomial
      run on the short-side Gram matrix where that needs fewer FLOPs, about
      0.56× for ``d×4d``, and the plain iteration elsewhere and for iterates
      below 32 bits; same quality at 0.86× the time on the examples' gradients,
      the benchmarks of the documentation; see :func:`normax.newton_schulz`),
      ``"newton_schulz"`` (the plain iteration everywhere, ``optax.contrib.muon``'s
      arithmetic) or ``"svd"`` (exact; for reference and tests). :meth:`dual_norm`
      and :meth:`norm` are always exact.
    steps: Newton–Schulz iterations.
    coefficients: Newton–Schulz schedule: ``"quintic"`` (classic Muon
      ``(3.4445, -4.7750, 2.0315)``), ``"polar_express"``, ``"cubic"``, one
      ``(a, b, c)`` triple, or one triple per step (a tuple of tuples).
    compute_dtype: dtype of the Newton–Schulz iterate, e.g. ``"bfloat16"`` on
      GPU/TPU (products accumulate in float32). ``None``: float32.
    precision: ``jax.lax.Precision`` of the Newton–Schulz matmuls.
    sharding: Where the iteration runs on sharded parameters (see
      :doc:`/sharding`): ``"auto"`` (default; per group of matrices,
      ``"distribute"`` for a batch, ``"gather"`` for a lone matrix,
      ``"partition"`` only for a matrix too big for one device; no
      collective inside the iteration otherwise), ``"partition"`` (GSPMD
      splits each matmul as the matrix is sharded), ``"gather"`` (replicate
      each matrix, every device computes it) or ``"distribute"`` (spread the
      whole matrices of a batch over the devices of the mesh). The result is
      the same up to float rounding and keeps the input's sharding.
    normalized: ``s = √(d_out/d_in)`` (default) rather than ``√d_out``.
    max: ``s = max(1, ·)`` of the above.
    preconditioning: Scaling before the first Newton–Schulz step:
      ``"frobenius"`` (default), ``"spectral"``, ``"schatten"`` or ``"aol"``
      (Turbo-Muon; one step fewer for the same quality), see
      :func:`normax.newton_schulz`.
    eps: Denominator guard of the preconditioning (``optax.contrib.muon``'s
      ``eps``); ``0`` only guards zero matrices.
    bounded: ``True`` ends Newton–Schulz with a cubic step that keeps every
      singular value of ``U Vᵀ``'s approximation at most 1, so
      ``norm(dualize(g)) ≤ 1`` up to float rounding (the quintic alone reaches
      1.2024; see :func:`normax.newton_schulz`), at 1.2–1.3× the time of the
      orthogonalization on CPU. ``None`` (default): ``False``, except in a constrained
      optimizer, which takes :meth:`for_constraint` (``True``). ``False``:
      never (e.g. to reproduce another library's constrained runs).

  The arguments from ``method`` to ``eps`` and ``bounded`` (all but ``normalized``
  and ``max``) form the norm's :attr:`orthogonalizer`; :meth:`as_matrices` is
  its matrix view of a leaf.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> g = jax.random.normal(jax.random.key(0), (4, 8))
    >>> d = normax.Spectral(method="svd").dualize(g)
    >>> bool(jnp.allclose(normax.Spectral().norm(d), 1.0, atol=1e-5))
    True

  References:
    Pethick et al., 2025, Table 2 ("Spectral"); Jordan et al., *Muon*, 2024;
    Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024.
  """

  # The orthogonalizer's settings take their defaults from it: one place decides them.
  method: Method = Orthogonalizer.method
  steps: int = Orthogonalizer.steps
  coefficients: str | tuple = Orthogonalizer.coefficients
  compute_dtype: str | None = Orthogonalizer.compute_dtype
  precision: str | None = Orthogonalizer.precision
  sharding: Strategy = Orthogonalizer.sharding
  normalized: bool = True
  max: bool = False
  preconditioning: str = Orthogonalizer.preconditioning
  eps: float = Orthogonalizer.eps
  bounded: bool | None = Orthogonalizer.bounded
  name = "spectral"

  def __post_init__(self):
    check_args(
      f"normax.{type(self).__name__}", steps=(self.steps, COUNT), eps=(self.eps, NONNEGATIVE)
    )
    # The orthogonalizer validates the other settings; keep its normalized values
    # (coefficient lists frozen to tuples, a dtype's name) so the norm stays hashable.
    orth = self.orthogonalizer
    for name in ("coefficients", "compute_dtype", "steps", "eps"):
      object.__setattr__(self, name, getattr(orth, name))

  # Equal and hashable as the frozen dataclass it is, with ``steps`` or ``eps`` traced too
  # (``optax.inject_hyperparams(normax.muon)``): a traced value counts by identity.
  def __eq__(self, other):
    return isinstance(other, Spectral) and static_key(self) == static_key(other)

  def __hash__(self):
    return hash(static_key(self))

  @property
  def orthogonalizer(self) -> Orthogonalizer:
    """The :class:`normax.Orthogonalizer` of this norm's settings (``method`` ... ``eps``).

    Norms with equal orthogonalizers compute ``U Vᵀ`` the same way, so
    ``normax.scale_by_lmo`` orthogonalizes their same-shape leaves in one batched call.
    """
    return Orthogonalizer(
      **{f.name: getattr(self, f.name) for f in dataclasses.fields(Orthogonalizer)}
    )

  def check(self, shape, dtype=None, path=None):
    super().check(shape, dtype, path)
    self._check_layout(tuple(shape), path)

  def for_constraint(self) -> Spectral:
    """This norm with ``bounded=True`` unless ``bounded`` was set: ``‖dualize(g)‖ ≤ 1``."""
    return self if self.bounded is not None else dataclasses.replace(self, bounded=True)

  def _check_layout(self, shape, path) -> None:
    """Refuses to read a conv kernel's spatial axes as a batch of matrices."""
    if len(shape) >= 3 and path and CONV_PATH.fullmatch(path):
      raise ValueError(
        f"{self!r} got shape {shape}{describe(path)}, which looks like a convolution"
        " kernel (*spatial, c_in, c_out): Spectral would orthogonalize each spatial tap"
        " separately, as a batch of independent matrices. Use normax.SpectralConv() for"
        " it (spatial_dims=... for a scanned stack of conv kernels). If its leading axes"
        " really are a stack of dense layers, put them in a module whose name does not"
        " contain 'conv'."
      )

  # -- matrix view ------------------------------------------------------------

  def dimension_scale(self, d_in: int, d_out: int) -> float:
    """The factor ``s`` of ``dualize = s·UVᵀ`` for a ``d_in × d_out`` matrix (see above)."""
    s = math.sqrt(d_out / d_in) if self.normalized else math.sqrt(d_out)
    return max(1.0, s) if self.max else s

  def as_matrices(self, x: jax.Array) -> tuple[jax.Array, float]:
    """The matrix view of a leaf: the ``(..., m, n)`` matrices the norm acts on, and ``s``.

    ``dualize(x)`` is ``s·U Vᵀ`` of these matrices, reshaped to ``x.shape``
    (see :meth:`from_polar`); for :class:`Spectral` they are ``x`` itself and
    ``s`` the :meth:`dimension_scale`, for :class:`SpectralConv` the stacked
    taps ``(..., k·c_in, c_out)`` and ``s/k``. ``x`` is not checked here
    (see :meth:`normax.Norm.check`).
    """
    d_in, d_out = x.shape[-2:]
    return x, self.dimension_scale(d_in, d_out)

  def from_polar(self, polar: jax.Array, scale: float, g: jax.Array) -> jax.Array:
    """``dualize(g)`` from the polar factor ``polar`` of ``g``'s :meth:`as_matrices` view.

    Scales by ``scale`` in ``g``'s compute dtype, then casts to ``g``'s dtype
    and reshapes to its shape, once.
    """
    return (polar.astype(compute_dtype(g)) * scale).astype(g.dtype).reshape(g.shape)

  def orthogonalize(self, g: jax.Array) -> jax.Array:
    """``U Vᵀ`` of each matrix, by this norm's :attr:`orthogonalizer` (no dimension scale)."""
    return self.orthogonalizer(g)

  # -- Norm interface ---------------------------------------------------------

  # The matrix code runs through with_auto_axes: on a leaf sharded over an
  # Explicit mesh axis, GSPMD partitions it (no explicit-mode rule covers a
  # matmul or SVD over a sharded matrix axis) and the result keeps the leaf's
  # sharding. Elsewhere it is a plain call.

  def dualize(self, g):
    return with_auto_axes(self._dualize, g)

  def _dualize(self, g):
    mats, scale = self.as_matrices(g)
    return self.from_polar(self.orthogonalize(mats), scale, g)

  def _singular_values(self, x):
    """``(σ/m, m, s)``: the singular values of each matrix over its largest entry ``m`` (the
    last axis), ``m`` and the dualize scale ``s``; exact at any scale, and ``m`` times them
    is taken last, so a norm overflows only if it is past the largest float."""
    mats, scale = self.as_matrices(x)
    r, m = scaled_by_max(svd_safe(mats.astype(compute_dtype(x))), (-2, -1))
    return jnp.linalg.svd(r, compute_uv=False), m[..., 0, 0], scale

  def _dual_norm(self, g):
    s, m, scale = self._singular_values(g)
    return m * (jnp.sum(s, axis=-1) * scale)

  def _norm(self, w):
    s, m, scale = self._singular_values(w)
    return m * (jnp.max(s, axis=-1, initial=0) / scale)

  def dual_norm(self, g):
    return with_auto_axes(self._dual_norm, g, keep=g.ndim - self.core_ndim(g.ndim))

  def norm(self, w):
    return with_auto_axes(self._norm, w, keep=w.ndim - self.core_ndim(w.ndim))

  def project(self, w, radius, sphere=False):
    """Singular values clipped to the ball's bound, ``σ_i ← min(σ_i, radius·s)`` (exact SVD).

    ``s`` is the dualize scale of :meth:`as_matrices`; this is the nearest
    point of the ball in Frobenius distance. On the sphere every nonzero
    singular value is set to ``radius·s`` (``radius·s·U Vᵀ``).
    """
    mats, scale = self.as_matrices(w)
    if sphere:
      out = orthogonalize_svd(mats) * (radius * scale)
    else:
      u, s, vt = jnp.linalg.svd(svd_safe(mats), full_matrices=False)
      out = jnp.matmul(u * jnp.minimum(s, radius * scale)[..., None, :], vt)
    return out.reshape(w.shape)

  def _init_direction(self, g):
    mats, scale = self.as_matrices(g)
    return (orthogonalize_svd(mats) * scale).reshape(g.shape)


@dataclasses.dataclass(frozen=True, eq=False)  # Spectral's == and hash.
class SpectralConv(Spectral):
  r"""Spectral norm of a convolution kernel, per spatial tap (RMS→RMS).

  A kernel of shape ``(*spatial, c_in, c_out)`` (Flax ``Conv``: 1-D, 2-D or
  3-D) is read as the ``(k·c_in, c_out)`` matrix that stacks its
  ``k = prod(spatial)`` taps, and

  .. math::
    dualize(G) = (√(c_out/c_in) / k)·U Vᵀ,

    ‖G‖† = (√(c_out/c_in) / k)·Σᵢ σᵢ,

    ‖W‖ = k·√(c_in/c_out)·σ_max(W),

  with ``U Σ Vᵀ`` the SVD of that reshape. This is Scion's convolution
  scaling (``Spectral`` on the flattened kernel, divided by the number of
  taps); ``normalized`` and ``max`` change ``√(c_out/c_in)`` as in
  :class:`Spectral`.

  Args:
    spatial_dims: Number of spatial axes. ``None`` takes every axis before
      the last two as spatial (no batch axes); pass it explicitly for a
      scanned stack of conv kernels, whose leading axes are then a batch.
    **kwargs: The Newton–Schulz options of :class:`Spectral`.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> k = normax.SpectralConv().init(jax.random.key(0), (3, 3, 8, 16))
    >>> bool(jnp.allclose(normax.SpectralConv().norm(k), 1.0, atol=1e-5))
    True

  References:
    Pethick et al., 2025, Sec. 5 and their reference code's conv scaling.
  """

  spatial_dims: int | None = None
  name = "spectral_conv"
  low_rank_hint = "normax.Spectral() for dense kernels"

  def __post_init__(self):
    super().__post_init__()
    check_args("normax.SpectralConv", spatial_dims=(self.spatial_dims, POSITIVE_COUNT))

  @property
  def min_ndim(self) -> int:
    return 3 if self.spatial_dims is None else self.spatial_dims + 2

  def core_ndim(self, ndim: int) -> int:
    return ndim if self.spatial_dims is None else self.spatial_dims + 2

  def _layout(self) -> str:
    return "(*spatial, c_in, c_out)"

  def _check_layout(self, shape, path) -> None:
    if self.spatial_dims is None and len(shape) > 5:
      raise ValueError(
        f"{self!r} got shape {tuple(shape)}{describe(path)}: more than 3 spatial"
        " axes. For a scanned stack of conv kernels pass spatial_dims, e.g."
        " normax.SpectralConv(spatial_dims=2)."
      )

  def for_view(self, view, path=None):
    """Reads the view's spatial axes as taps and its stack axes as a batch."""
    if view is None:
      return self
    if not view.spatial:
      raise ValueError(
        f"{self!r} got a dense kernel{describe(path)} (its view has no spatial axes); use"
        " normax.Spectral() for it."
      )
    return dataclasses.replace(self, spatial_dims=len(view.spatial))

  def as_matrices(self, x):
    """The stacked taps ``(..., k·c_in, c_out)`` of a kernel, and the dualize scale ``s/k``."""
    core = self.core_ndim(x.ndim)
    batch = x.shape[: x.ndim - core]
    spatial = x.shape[x.ndim - core : -2]
    c_in, c_out = x.shape[-2:]
    k = math.prod(spatial)
    return x.reshape(*batch, k * c_in, c_out), self.dimension_scale(c_in, c_out) / k
