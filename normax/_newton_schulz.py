"""Orthogonalization: the polar factor ``U Vᵀ`` of a (batch of) matrices.

Two methods: an odd quintic Newton–Schulz iteration (fast, matmul-only, the
default) and an exact SVD (reference). Both act on the last two axes; leading
axes are independent matrices and are handled by one batched call.

The iteration's step polynomials (the schedules: :data:`QUINTIC`,
:data:`CUBIC`, :data:`DION`, Polar Express) are designed in ``_schedules``.
:data:`PRECONDITIONINGS` names the ways to scale the matrix before the first
step (see :func:`precondition`).

Examples:
  >>> import normax
  >>> normax.PRECONDITIONINGS  # scalings before the first step
  ('frobenius', 'spectral', 'aol', 'schatten')
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from normax._base import acc_dtype, l2_norm, scaled_by_max, svd_safe
from normax._checks import COUNT, NONNEGATIVE, check_args
from normax._schedules import resolve_coefficients, schedule_peak

#: How the matrix is scaled before the first step (``optax.contrib.muon``'s ``preconditioning``).
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


def _matmul(a: jax.Array, b: jax.Array, out_dtype, precision) -> jax.Array:
  return jnp.matmul(a, b, precision=precision, preferred_element_type=out_dtype)


def newton_schulz(
  x: jax.Array,
  *,
  steps: int = 5,
  coefficients: str | Sequence = "quintic",
  compute_dtype: jnp.dtype | None = None,
  precision: jax.lax.PrecisionLike = None,
  gram: bool | None = False,
  preconditioning: str = "frobenius",
  eps: float | jax.Array = 0.0,
  bounded: bool = False,
) -> jax.Array:
  r"""Approximate polar factor ``U Vᵀ`` of each matrix by Newton–Schulz.

  The matrix is divided by its Frobenius norm (so every singular value is at
  most 1; computed after dividing by the largest entry, so the result is the
  same at any scale of ``x`` and NaN if ``x`` holds a NaN or an inf), then
  each step applies an odd quintic to the singular values,

  .. math::
    A = X Xᵀ,  X ← a·X + (b·A + c·A²)·X,

  with ``A`` formed on the short side of the matrix (``XᵀX`` for tall ones, so
  no transpose is materialized). Singular vectors are untouched, so the result
  is ``U p(Σ) Vᵀ`` with ``p`` the composition of the step polynomials.

  Args:
    x: Array of shape ``(..., m, n)``; leading axes are a batch.
    steps: Number of iterations.
    coefficients: Schedule, see :func:`resolve_coefficients`.
    compute_dtype: dtype of the iterate, e.g. ``jnp.bfloat16`` on accelerators;
      products then accumulate in float32 and are rounded once per step.
      ``None`` computes in float32 (or float64 for float64 input).
    precision: ``jax.lax.Precision`` for the matmuls (matters on TPU).
    gram: ``True`` runs the same polynomial in Gram form (below); ``None``
      chooses it where it needs fewer FLOPs, i.e. for matrices at least
      :data:`GRAM_MIN_ASPECT` times longer than short, and only when the
      iterate is at least 32-bit (16-bit floats lose the small singular
      values in the Gram matrix); ``False`` (default) never.
    preconditioning: How ``X`` is scaled before the first step so that its
      singular values are at most 1 (the options of ``optax.contrib.muon``):
      ``"frobenius"`` (default) divides by ``‖X‖_F + eps``; ``"spectral"`` by
      ``σ_max(X) + eps`` (an SVD: exact but costly); ``"schatten"`` by the
      Schatten-4 norm ``‖X Xᵀ‖_F^{1/2}`` (Grishina et al., 2025), which is
      closer to ``σ_max`` at no extra cost; ``"aol"`` scales each row ``i`` of
      the short side by ``(Σ_j |X Xᵀ|_{ij})^{-1/2}`` (Turbo-Muon's almost
      orthogonal layer rescaling, Boissin et al., 2025): ``σ_max ≤ 1`` is
      guaranteed and the small singular values start larger, so one step
      fewer usually reaches the same quality. ``"aol"`` multiplies ``X`` by a
      diagonal matrix, so its polar factor is that of ``D X``, not exactly of
      ``X``; the other three only rescale.
    eps: Added to the ``"frobenius"``/``"spectral"`` denominators and the
      floor of the ``"schatten"``/``"aol"`` ones, as ``optax.contrib.muon``
      does; ``0`` (default) only guards zero matrices.
    bounded: End with one cubic step ``q(x) = (3x − x³)/2`` (two matmuls,
      run on the iterate itself, also after the Gram form): ``q`` maps
      ``[0, √3]`` into ``[0, 1]`` with ``q(1) = 1`` and ``q'(1) = 0``, so every
      singular value of the result is at most 1 up to float rounding (about
      1e-6 in float32; the rounding of a 16-bit ``compute_dtype`` or input
      dtype otherwise), where the schedule alone reaches
      ``schedule_peak(coefficients, steps)`` (1.2024 for the quintic). A schedule
      that reaches past ``√3`` is divided by its peak first. The band of the
      quintic, ``[0.68, 1.134]`` for ``σ ≥ 1e-2·‖G‖_F``, becomes
      ``[0.86, 1]``. A schedule that already ends within ``1e-4`` of 1 (8 Polar
      Express steps) gets no extra step. Constrained Scion uses it to keep each
      layer in its ball.

  ``steps`` may be a traced integer (e.g. a hyperparameter injected by
  ``optax.inject_hyperparams``): the iteration then runs as a
  ``jax.lax.fori_loop`` (not unrolled, no Gram form) and ``coefficients``
  must be a triple or a schedule whose rows do not depend on ``steps``.

  Gram form. Every iterate is ``X_k = Q_k X_0`` with ``Q_k`` a polynomial in
  the short-side Gram matrix ``R_0 = X_0 X_0ᵀ`` (``s×s`` for an ``s×l``
  matrix, ``s ≤ l``), so the whole iteration can run on ``s×s`` matrices:
  ``Z = aI + bR + cR²``, ``Q ← ZQ``, ``R ← Z(ZR)``, and ``X = Q X_0`` once
  at the end. It costs ``4s²l + 34s³`` FLOPs for five steps against
  ``20s²l + 10s³`` for the plain iteration: about 0.56× for a ``d×4d`` MLP
  matrix, and more than the plain one for square matrices. Both give the
  same polynomial of ``X_0``, so the results agree up to float rounding; the
  Gram form's rounding is larger (in float32, about 1e-4 of the largest
  entry for singular values spread over four decades, against 1e-5), far
  below the quintic's own distance from ``U Vᵀ``.

  Returns:
    An array of ``x``'s shape and dtype. Zero matrices map to zero.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> g = jax.random.normal(jax.random.key(0), (4, 6))
    >>> x = normax.newton_schulz(g, steps=8, coefficients="polar_express")
    >>> bool(jnp.allclose(jnp.linalg.svd(x, compute_uv=False), 1.0, atol=1e-3))
    True

    The classic quintic only lands in a band around 1 (see :func:`schedule_bound`):

    >>> s = jnp.linalg.svd(normax.newton_schulz(g), compute_uv=False)
    >>> lo, hi = normax.schedule_bound("quintic", 5, lower=1e-2)
    >>> bool(jnp.all((lo < s) & (s < hi))), bool(jnp.allclose(s, 1.0, atol=0.01))
    (True, False)
  """
  check_args("normax.newton_schulz", steps=(steps, COUNT), eps=(eps, NONNEGATIVE))
  if x.ndim < 2:
    raise ValueError(f"newton_schulz needs a matrix (..., m, n); got shape {x.shape}.")
  dynamic = not isinstance(steps, int)
  schedule = resolve_coefficients(coefficients, None if dynamic else steps)
  out_dtype = x.dtype
  acc = acc_dtype(x.dtype)
  cdt = acc if compute_dtype is None else jnp.dtype(compute_dtype)
  m, n = x.shape[-2:]
  tall = m > n
  # precondition divides by the largest entry first, which keeps every sum of
  # squares finite and nonzero at any scale (the result is scale-invariant);
  # zero matrices stay zero and NaN/inf entries make the whole matrix NaN.
  X = precondition(x.astype(acc), preconditioning, eps).astype(cdt)
  if dynamic:
    if bounded:
      raise TypeError(
        "newton_schulz(bounded=True) needs a static number of steps (its final scaling"
        " depends on the schedule's peak); got a traced steps."
      )
    return _fori_newton_schulz(X, schedule, steps, tall, acc, cdt, precision).astype(out_dtype)
  if gram is None:
    gram = max(m, n) >= GRAM_MIN_ASPECT * min(m, n) and jnp.finfo(cdt).bits >= 32
  if gram and schedule:
    X = _gram_newton_schulz(X, schedule, tall, acc, cdt, precision)
  else:
    X = _plain_newton_schulz(X, schedule, tall, acc, cdt, precision)
  peak = schedule_peak(schedule, len(schedule)) if bounded else 1.0
  if peak > 1 + SELF_BOUNDED:  # (A schedule that ends within SELF_BOUNDED of 1 needs no step.)
    X = _bounded_step(X, peak, tall, acc, cdt, precision)
  return X.astype(out_dtype)


#: A schedule whose peak is at most ``1 + SELF_BOUNDED`` (8 Polar Express steps: 1 + 2.5e-6) is
#: bounded already: ``bounded=True`` adds nothing to it.
SELF_BOUNDED = 1e-4

#: ``q(x) = (3x − x³)/2`` maps ``[0, CUBIC_REACH]`` into ``[0, 1]`` (``q(√3) = 0``); a
#: schedule whose peak comes within 1% of it is divided by its peak before ``q``.
CUBIC_REACH = 0.99 * 3**0.5


def _bounded_step(X, peak: float, tall: bool, acc, cdt, precision) -> jax.Array:
  """One cubic Newton–Schulz step on ``X`` (first divided by ``peak`` if that is past the
  cubic's reach): every singular value ends in ``[0, 1]``. Returned in ``acc``."""
  X = X.astype(acc)
  if peak > CUBIC_REACH:
    X = X / peak
  Xc = X.astype(cdt)
  t = jnp.swapaxes(Xc, -1, -2)
  A = _matmul(t, Xc, acc, precision) if tall else _matmul(Xc, t, acc, precision)
  Ac = A.astype(cdt)
  AX = _matmul(Xc, Ac, acc, precision) if tall else _matmul(Ac, Xc, acc, precision)
  return 1.5 * X - 0.5 * AX


def _plain_newton_schulz(X, schedule, tall: bool, acc, cdt, precision) -> jax.Array:
  """The step polynomials applied to the iterate ``X`` itself (see ``newton_schulz``)."""
  for a, b, c in schedule:
    if tall:  # Gram on the short side: A = XᵀX (n×n), X ← aX + X(bA + cA²).
      A = _matmul(jnp.swapaxes(X, -1, -2), X, acc, precision)
    else:
      A = _matmul(X, jnp.swapaxes(X, -1, -2), acc, precision)
    if c != 0.0:
      A_c = A.astype(cdt)
      B = b * A + c * _matmul(A_c, A_c, acc, precision)
    else:
      B = b * A
    B = B.astype(cdt)
    XB = _matmul(X, B, acc, precision) if tall else _matmul(B, X, acc, precision)
    X = (a * X.astype(acc) + XB).astype(cdt)
  return X


def _short_gram(x: jax.Array) -> jax.Array:
  """``X Xᵀ`` on the short side of each matrix (``Xᵀ X`` for tall ones)."""
  t = jnp.swapaxes(x, -1, -2)
  return jnp.matmul(t, x) if x.shape[-2] > x.shape[-1] else jnp.matmul(x, t)


def precondition(x: jax.Array, preconditioning: str = "frobenius", eps=0.0) -> jax.Array:
  """Scales each matrix so its singular values are at most 1 (see :func:`newton_schulz`).

  Zero matrices stay zero; NaN/inf propagate.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> x = jnp.array([[3.0, 0.0], [0.0, 4.0]])
    >>> normax.precondition(x, "frobenius")  # ÷ ‖x‖_F = 5
    Array([[0.6, 0. ],
           [0. , 0.8]], dtype=float32)
    >>> normax.precondition(x, "aol")  # each row ÷ √(row sum of |x xᵀ|): orthogonal here
    Array([[1., 0.],
           [0., 1.]], dtype=float32)
  """
  check_args("normax.precondition", eps=(eps, NONNEGATIVE))
  if preconditioning not in PRECONDITIONINGS:
    raise ValueError(
      f"Unknown preconditioning {preconditioning!r}; expected one of {PRECONDITIONINGS}."
    )
  # Scale-free first: every entry in [-1, 1], so no sum of squares below over- or underflows.
  # eps is rescaled with the matrix, so the result is exactly the formula on the unscaled x
  # (and, with eps = 0, does not depend on the scale of x at all).
  x, m = scaled_by_max(x, (-2, -1))
  eps = jnp.asarray(eps, x.dtype)
  if preconditioning in ("frobenius", "spectral"):
    if preconditioning == "frobenius":
      size = l2_norm(x, (-2, -1))
    else:
      size = jnp.linalg.svd(svd_safe(x), compute_uv=False)[..., :1, None]
    den = size + eps / m
    return x / jnp.where(den == 0, 1, den)
  a = _short_gram(x)
  if preconditioning == "schatten":  # ‖x‖_S4 = ‖x xᵀ‖_F^{1/2} ≥ σ_max.
    r = l2_norm(a, (-2, -1))
  else:  # AOL: r_i = Σ_j |A_ij| bounds the spectrum of A (Gershgorin), so D A D ≼ I.
    r = jnp.sum(jnp.abs(a), axis=-1)
    r = r[..., None, :] if x.shape[-2] > x.shape[-1] else r[..., :, None]
  # The floor scales as m² (like r). Divided twice, so that m² never underflows to 0: with
  # eps = 0 and a gradient below ~1e-19 that was 0/0 = NaN.
  r = jnp.maximum(r, jnp.where(eps > 0, eps / m / m, 0))
  return x * jax.lax.rsqrt(jnp.where(r == 0, 1, r))


def _fori_newton_schulz(X, schedule, steps, tall: bool, acc, cdt, precision) -> jax.Array:
  """The plain iteration as a ``fori_loop`` over a traced step count (last row repeats)."""
  table = jnp.asarray(schedule, acc)
  last = len(schedule) - 1

  def body(i, X):
    a, b, c = table[jnp.minimum(i, last)]
    t = jnp.swapaxes(X, -1, -2)
    A = _matmul(t, X, acc, precision) if tall else _matmul(X, t, acc, precision)
    A_c = A.astype(cdt)
    B = (b * A + c * _matmul(A_c, A_c, acc, precision)).astype(cdt)
    XB = _matmul(X, B, acc, precision) if tall else _matmul(B, X, acc, precision)
    return (a * X.astype(acc) + XB).astype(cdt)

  return jax.lax.fori_loop(0, jnp.asarray(steps, jnp.int32), body, X)


#: Smallest long/short side ratio at which ``newton_schulz(gram=None)`` uses the
#: Gram form: five plain steps cost ``20s²l + 10s³``, the Gram form
#: ``4s²l + 34s³`` (break-even at ``l = 1.5s``).
GRAM_MIN_ASPECT = 2

#: The Gram form restarts after this many steps: it forms ``X = Q X₀`` and its Gram
#: matrix afresh (``4s²l`` FLOPs). Its rounding grows with the steps run on one Gram
#: matrix: 8 Polar Express steps reached σ = 1.19 (32×512, condition 1e4) against the
#: schedule's 1.000003, and 1.0000 with a restart after 5; 5 steps or fewer never restart.
GRAM_RESTART = 5


def _gram_newton_schulz(X, schedule, tall: bool, acc, cdt, precision) -> jax.Array:
  """The Gram form, restarted every :data:`GRAM_RESTART` steps. Returned in ``acc``."""
  for start in range(0, len(schedule), GRAM_RESTART):
    chunk = schedule[start : start + GRAM_RESTART]
    X = _gram_chunk(X.astype(cdt), chunk, tall, acc, cdt, precision)
  return X


def _gram_chunk(X, schedule, tall: bool, acc, cdt, precision) -> jax.Array:
  """The Newton–Schulz polynomial on the short-side Gram matrix (see ``newton_schulz``)."""
  t = lambda y: jnp.swapaxes(y, -1, -2)  # noqa: E731
  R = _matmul(t(X), X, acc, precision) if tall else _matmul(X, t(X), acc, precision)
  eye = jnp.broadcast_to(jnp.eye(R.shape[-1], dtype=acc), R.shape)
  Q = None
  for k, (a, b, c) in enumerate(schedule):
    Rc = R.astype(cdt)
    Z = a * eye + b * R
    if c != 0.0:
      Z = Z + c * _matmul(Rc, Rc, acc, precision)
    Zc = Z.astype(cdt)
    Q = Z if Q is None else _matmul(Zc, Q.astype(cdt), acc, precision)
    if k < len(schedule) - 1:  # R ← Z R Z (= Z² R: all are polynomials in R₀).
      R = _matmul(Zc, _matmul(Zc, Rc, acc, precision).astype(cdt), acc, precision)
  Qc = Q.astype(cdt)
  return _matmul(X, Qc, acc, precision) if tall else _matmul(Qc, X, acc, precision)


def orthogonalize_svd(x: jax.Array) -> jax.Array:
  """Exact polar factor ``U Vᵀ`` of each matrix via the SVD.

  Singular values that are zero (to float tolerance relative to the largest)
  get a zero in place of 1, so a rank-deficient or zero matrix maps to the
  exact argmax of ``⟨G, T⟩`` over the spectral ball that lives in its range.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> g = jax.random.normal(jax.random.key(0), (4, 6))
    >>> q = normax.orthogonalize_svd(g)
    >>> bool(jnp.allclose(q @ q.T, jnp.eye(4), atol=1e-5))
    True
    >>> normax.orthogonalize_svd(jnp.array([[2.0, 0.0], [0.0, 0.0]]))
    Array([[1., 0.],
           [0., 0.]], dtype=float32)
  """
  acc = acc_dtype(x.dtype)
  xf, _ = scaled_by_max(x.astype(acc), (-2, -1))  # The polar factor is scale-free.
  u, s, vt = jnp.linalg.svd(svd_safe(xf), full_matrices=False)
  tol = jnp.max(s, axis=-1, keepdims=True) * (max(x.shape[-2:]) * jnp.finfo(acc).eps)
  keep = (s > tol).astype(acc)
  # NaN singular values (non-finite input) keep NaN in the output.
  keep = jnp.where(jnp.isnan(s), jnp.nan, keep)
  out = jnp.matmul(u * keep[..., None, :], vt)
  return out.astype(x.dtype)


__all__ = [
  "PRECONDITIONINGS",
  "CUBIC_REACH",
  "SELF_BOUNDED",
  "GRAM_MIN_ASPECT",
  "GRAM_RESTART",
  "newton_schulz",
  "orthogonalize_svd",
  "precondition",
]
