"""The ``Norm`` interface shared by every norm, and its shape checks."""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp


def where_nonzero(den: jax.Array, num: jax.Array) -> jax.Array:
  """``num / den`` where ``den != 0``, else 0; NaN/inf denominators propagate."""
  return num / jnp.where(den == 0, jnp.ones_like(den), den)


def scaled_by_max(x: jax.Array, axis) -> tuple[jax.Array, jax.Array]:
  """``(x / m, m)`` with ``m = max |x|`` over ``axis`` (kept; ``1`` where ``m = 0``).

  Every entry of ``x / m`` lies in ``[-1, 1]`` and the largest has size 1, so a
  sum of squares of it neither overflows nor underflows whatever the scale of
  ``x``: normalize by it before any ℓ2 norm or Newton–Schulz step, and the
  result does not depend on the scale of the input. Non-finite input stays
  visible: a NaN makes ``m`` NaN, an inf makes ``m`` inf and ``inf / inf``
  NaN, so the whole slice comes out NaN. Zero-size slices give ``m = 1``.
  """
  m = jnp.max(jnp.abs(x), axis=axis, keepdims=True, initial=0)
  m = jnp.where(m == 0, jnp.ones_like(m), m)
  return divide(x, m), m


def divide(x: jax.Array, den: jax.Array) -> jax.Array:
  """``x / den`` for ``den > 0`` at any scale: ``(x / √den) / √den``.

  XLA turns a division by a broadcast denominator into a product with its reciprocal,
  and ``1/den`` is subnormal, so flushed to 0, for ``den ≥ 2¹²⁶ ≈ 8.5e37``: ``x / den``
  came out 0 for ``x = den``. ``1/√den`` is a normal number for every positive float;
  between ``2⁻¹⁰⁰`` and ``2¹⁰⁰`` the plain division (one rounding) is used.
  """
  s = jnp.sqrt(den)
  plain = (den > 2.0**-100) & (den < 2.0**100)  # Exact there: a normal reciprocal.
  return jnp.where(plain, x / jnp.where(plain, den, 1), x / s / s)


def scaled_sum(x: jax.Array, axis, factor: float = 1.0) -> jax.Array:
  """``factor · Σ x`` over ``axis`` (not kept) for ``x ≥ 0``, summed after dividing by the
  largest entry: finite whenever the result is, though ``Σ x`` alone may overflow."""
  r, m = scaled_by_max(x, axis)
  m = jnp.squeeze(m, axis)
  return jnp.where(jnp.isinf(m), m, m * (jnp.sum(r, axis=axis) * factor))  # inf stays inf.


def _root_sum_squares(r: jax.Array, axis) -> jax.Array:
  """``√Σ r²`` over ``axis`` (kept) of ``r`` at unit scale (:func:`scaled_by_max`'s)."""
  return jnp.sqrt(jnp.sum(jnp.square(r), axis=axis, keepdims=True))


def l2_norm(x: jax.Array, axis) -> jax.Array:
  """``‖x‖₂`` over ``axis`` (kept), finite wherever the result is representable.

  The one root of a sum of squares in normax: the Frobenius norm of each matrix with
  ``axis=(-2, -1)``, of a whole leaf with ``axis=None``, of rows or columns with ``-1``
  or ``-2``. Squares are taken of ``x / max|x|`` (:func:`scaled_by_max`), so they
  neither overflow for huge ``x`` nor underflow for tiny ``x``. A NaN or inf entry makes
  its slice's norm NaN (visible, never a finite wrong value); zero-size slices give 0.
  """
  r, m = scaled_by_max(x, axis)
  return m * _root_sum_squares(r, axis)


def unit_l2(x: jax.Array, axis) -> jax.Array:
  """``x / ‖x‖₂`` over ``axis`` (0 where ``x`` is 0), computed without overflow."""
  r, _ = scaled_by_max(x, axis)
  return where_nonzero(_root_sum_squares(r, axis), r)


def svd_safe(x: jax.Array) -> jax.Array:
  """``x`` with ±inf replaced by NaN: LAPACK's SVD never returns on an inf entry (CPU),
  while NaN comes back as NaN singular values, so non-finite input stays visible."""
  return jnp.where(jnp.isinf(x), jnp.nan, x)


def acc_dtype(dtype) -> jnp.dtype:
  """float32 for low-precision floats (bf16/f16), the dtype itself otherwise.

  Unlike ``jnp.promote_types`` this does not consult the promotion lattice,
  so it also works under ``jax.numpy_dtype_promotion("strict")``.
  """
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
    return jnp.dtype(jnp.float32)
  return dtype


def compute_dtype(x: jax.Array) -> jnp.dtype:
  """The dtype normax computes ``x``'s norms in: :func:`acc_dtype` of its dtype."""
  return acc_dtype(x.dtype)


def describe(path: str | None) -> str:
  return f" at {path!r}" if path else ""


def rescale_onto(x: jax.Array, size: jax.Array, bound: jax.Array, sphere: bool) -> jax.Array:
  """``x · bound/size`` (sphere) or ``x · min(1, bound/size)`` (ball); zero stays zero.

  ``size`` is the norm of each slice of ``x`` (broadcastable to it): the
  radial projection of each slice onto the ball (or sphere) of radius ``bound``.
  """
  safe = jnp.where(size == 0, jnp.ones_like(size), size)
  factor = divide(bound * jnp.ones_like(safe), safe)
  if not sphere:
    factor = jnp.minimum(factor, 1)
  return x * jnp.where(size == 0, jnp.ones_like(factor), factor)


def clip_onto(x: jax.Array, bound: jax.Array, sphere: bool) -> jax.Array:
  """Each entry of ``x`` clipped to ``[-bound, bound]`` (sphere: ``bound · sign(x)``)."""
  return bound * jnp.sign(x) if sphere else jnp.clip(x, -bound, bound)


def _zero_size_safe(fn, method: str):
  """Wraps a norm's ``method``: the input is checked (rank and dtype, :meth:`Norm.check`) and
  made an array before ``fn`` sees it, and a zero-size input gives zeros after the checks."""

  @functools.wraps(fn)
  def wrapper(self, x):
    x = self._checked(x)  # One place for the checks of every norm's three methods.
    if math.prod(x.shape) != 0:
      return fn(self, x)
    if method == "dualize":
      return jnp.zeros_like(x)
    keep = x.ndim - self.core_ndim(x.ndim)
    return jnp.zeros(x.shape[:keep], compute_dtype(x))

  wrapper._zero_size_safe = True
  return wrapper


def _projection_safe(fn):
  """Wraps a norm's ``project``: a zero-size leaf comes back as is; otherwise ``fn`` gets the
  leaf in its compute dtype and the radius as an array of that dtype, and its result is cast
  back to the leaf's dtype."""

  @functools.wraps(fn)
  def wrapper(self, w, radius, sphere=False):
    if math.prod(jnp.shape(w)) == 0:  # Nothing to project (and no dimension factor to divide by).
      return w
    w = jnp.asarray(w)
    x = w.astype(acc_dtype(w.dtype))
    r = jnp.asarray(radius).astype(x.dtype)
    return fn(self, x, r, sphere).astype(w.dtype)

  wrapper._projection_safe = True
  return wrapper


@dataclasses.dataclass(frozen=True)
class Norm(abc.ABC):
  """A norm on parameter tensors, with its linear minimization oracle.

  Subclasses implement :meth:`dualize`, :meth:`dual_norm` and :meth:`norm` on
  the trailing ``core_ndim`` axes of a leaf; any leading axes are a batch of
  independent tensors (scanned layer stacks, experts), and :meth:`dual_norm`
  and :meth:`norm` return one value per batch entry (the leaf's shape without
  its :meth:`core_axes`).

  Sign convention: :meth:`dualize` is gradient-aligned,
  ``dualize(g) = argmax_{‖t‖≤1} ⟨g, t⟩``, so ``⟨g, dualize(g)⟩ = dual_norm(g)``
  and ``norm(dualize(g)) = 1`` for ``g ≠ 0``. :meth:`lmo` is the paper's
  oracle ``argmin_{‖t‖≤1} ⟨g, t⟩ = -dualize(g)``.

  Norms are frozen dataclasses: hashable, comparable, safe to close over in
  ``jax.jit`` and to use as static pytree metadata.

  Examples:
    A new norm subclasses ``Norm`` and registers a name; here the ℓ∞ norm of
    a vector (its dual is ℓ1, its dualizer the sign):

    >>> import dataclasses, jax.numpy as jnp, normax
    >>> @dataclasses.dataclass(frozen=True)
    ... class MaxNorm(normax.Norm):
    ...   name = "max"
    ...   min_ndim = 1
    ...   def core_ndim(self, ndim):
    ...     return 1
    ...   def dualize(self, g):
    ...     return jnp.sign(g)
    ...   def dual_norm(self, g):
    ...     return jnp.sum(jnp.abs(g), axis=-1)
    ...   def norm(self, w):
    ...     return jnp.max(jnp.abs(w), axis=-1)
    >>> g = jnp.array([3.0, -1.0, 0.5])
    >>> MaxNorm().lmo(g), MaxNorm().dual_norm(g)
    (Array([-1.,  1., -1.], dtype=float32), Array(4.5, dtype=float32))
  """

  def __init_subclass__(cls, **kwargs):
    # Every norm, a user's included, maps a zero-size leaf (a (0, 4) kernel, a
    # stack of no layers) to zeros: there is nothing to normalize, and no
    # dimension factor should divide by its zero-length axis.
    super().__init_subclass__(**kwargs)
    for method in ("dualize", "dual_norm", "norm"):
      fn = cls.__dict__.get(method)
      if fn is not None and not getattr(fn, "_zero_size_safe", False):
        setattr(cls, method, _zero_size_safe(fn, method))
    fn = cls.__dict__.get("project")
    if fn is not None and not getattr(fn, "_projection_safe", False):
      cls.project = _projection_safe(fn)

  #: Registry name (``normax.get_norm(name)``).
  name: ClassVar[str] = ""
  #: What to use instead for leaves of too small a rank (for error messages).
  low_rank_hint: ClassVar[str] = "normax.BiasRMS() for vectors (biases, gains)"

  # -- to implement -----------------------------------------------------------

  @abc.abstractmethod
  def dualize(self, g: jax.Array) -> jax.Array:
    """``argmax_{‖t‖≤1} ⟨g, t⟩`` per tensor: the gradient-aligned direction."""

  @abc.abstractmethod
  def dual_norm(self, g: jax.Array) -> jax.Array:
    """``‖g‖† = max_{‖t‖≤1} ⟨g, t⟩`` per tensor."""

  @abc.abstractmethod
  def norm(self, w: jax.Array) -> jax.Array:
    """``‖w‖`` per tensor."""

  @property
  def min_ndim(self) -> int:
    """Smallest leaf rank the norm accepts."""
    return 2

  def core_ndim(self, ndim: int) -> int:
    """Number of trailing axes of a rank-``ndim`` leaf that form one tensor."""
    del ndim
    return 2

  def core_axes(self, ndim: int) -> tuple[int, ...]:
    """The trailing axes reduced over by :meth:`norm` and :meth:`dual_norm`."""
    return tuple(range(ndim - self.core_ndim(ndim), ndim))

  # -- derived ----------------------------------------------------------------

  def lmo(self, g: jax.Array) -> jax.Array:
    """The linear minimization oracle ``argmin_{‖t‖≤1} ⟨g, t⟩ = -dualize(g)``."""
    return -self.dualize(g)

  def for_constraint(self) -> Norm:
    """The norm a constrained optimizer uses: one whose :meth:`dualize` never leaves the ball.

    Constrained Scion keeps ``‖x‖ ≤ ρ/μ`` only if ``norm(dualize(g)) ≤ 1``. Exact
    dualizers satisfy it, and this default returns ``self``; a norm that approximates its
    dualize returns a variant that bounds it (:class:`normax.Spectral`: ``bounded=True``,
    unless ``bounded`` was set).

    Examples:
      >>> import normax
      >>> normax.Sign().for_constraint() == normax.Sign()
      True
      >>> normax.Spectral().for_constraint().bounded
      True
    """
    return self

  @_projection_safe
  def project(self, w: jax.Array, radius, sphere: bool = False) -> jax.Array:
    """Projects each tensor of ``w`` onto the ball ``‖w‖ ≤ radius`` (or the sphere ``= radius``).

    This default is the radial retraction ``w · min(1, radius/‖w‖)`` (sphere:
    ``w · radius/‖w‖``) under :meth:`norm`: on the ball, exact along the
    ray, but not the nearest point of the ball in general. Norms override it
    with their exact projection (:class:`normax.Spectral` clips singular
    values, :class:`normax.Sign` entries, :class:`normax.ColNorm` rows).
    Zero tensors stay zero; :func:`normax.project` applies it to a pytree.

    An override receives ``w`` in its compute dtype (at least float32) and
    ``radius`` as an array of that dtype; its result is cast back to the
    leaf's dtype, and a zero-size leaf never reaches it.

    Examples:
      >>> import jax.numpy as jnp, normax
      >>> normax.Frobenius().project(jnp.array([3.0, 4.0]), 1.0)
      Array([0.6, 0.8], dtype=float32)
      >>> normax.Sign(normalized=False).project(jnp.array([3.0, -0.5]), 1.0, sphere=True)
      Array([ 1., -1.], dtype=float32)
    """
    size = self.norm(w).astype(w.dtype)
    size = jnp.reshape(size, size.shape + (1,) * (w.ndim - size.ndim))
    return rescale_onto(w, size, radius, sphere)

  def init(self, key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Draws a tensor on the unit sphere of this norm (boundary initialization).

    The direction is ``dualize`` of a standard Gaussian, so ``norm(init(...))``
    is 1 for every tensor in the batch; ``radius * init(...)`` puts a layer on
    the boundary of its constraint ball, as in Scion.
    """
    shape = tuple(shape)
    self.check(shape, dtype)
    if math.prod(shape) == 0:  # Nothing to draw (and no dimension factor to divide by).
      return jnp.zeros(shape, dtype)
    g = jax.random.normal(key, shape, acc_dtype(dtype))
    return self._init_direction(g).astype(dtype)

  def _init_direction(self, g: jax.Array) -> jax.Array:
    return self.dualize(g)

  def check(self, shape: tuple[int, ...], dtype=None, path: str | None = None) -> None:
    """Raises a ``ValueError`` naming ``path`` if a leaf cannot take this norm."""
    shape = tuple(shape)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
        f"{self!r} got a leaf{describe(path)} of shape {shape} and dtype"
        f" {jnp.dtype(dtype)}; norms act on floating-point arrays. Leave"
        " integer or boolean leaves out of the optimizer (e.g. with"
        " optax.partition and optax.set_to_zero)."
      )
    if len(shape) < self.min_ndim:
      raise ValueError(
        f"{self!r} needs an array of rank >= {self.min_ndim} {self._layout()};"
        f" got shape {shape}{describe(path)} (rank {len(shape)}). Use"
        f" {self.low_rank_hint} instead."
      )

  def _layout(self) -> str:
    return "(..., fan_in, fan_out)"

  def for_view(self, view, path: str | None = None) -> Norm:
    """This norm for a leaf read in ``view``'s matrix layout (a :class:`normax.MatrixView`).

    In the matrix layout ``stack + spatial + (fan_in, fan_out)`` a dense norm
    reads the last two axes as usual; a view with spatial (tap) axes belongs
    to a convolution kernel, which only a conv-aware norm reads
    (:class:`normax.SpectralConv` overrides this).
    """
    if view is not None and view.spatial:
      raise ValueError(
        f"{self!r} got a convolution kernel{describe(path)} (its view has spatial axes"
        f" {view.spatial}); a dense norm would read each tap as a separate matrix. Use"
        " normax.SpectralConv() for it."
      )
    return self

  def _checked(self, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    self.check(x.shape, x.dtype)
    return x
