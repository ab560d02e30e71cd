"""Every norm against an independent numpy reference, the LMO identities, and edge cases.

The references below follow the table of norms in docs/design.md (with its dimension factors) and
are computed in float64 numpy, with ``np.linalg.svd`` for the spectral norms, from the very input
the norm saw (bfloat16 inputs are rounded first, so only the norm's own rounding is tolerated).
"""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import scalar_map
from hypothesis import given, settings
from hypothesis import strategies as st

import normax

# -- independent float64 references ------------------------------------------


def _conj(p):
  return math.inf if p == 1 else 1.0 if p == math.inf else p / (p - 1)


def _lp(x, p, axis):
  a = np.abs(x)
  if p == math.inf:
    return a.max(axis=axis)
  return (a**p).sum(axis=axis) ** (1 / p)


def _lp_maximizer(g, q, axis):
  """argmax <g, t> over ‖t‖_{q*} ≤ 1 along ``axis``, for ``g`` with no zero slice."""
  if q == 1:
    return np.sign(g)
  if q == math.inf:
    idx = np.argmax(np.abs(g), axis=axis)
    t = np.zeros_like(g)
    np.put_along_axis(t, np.expand_dims(idx, axis), 1.0, axis=axis)
    return t * np.sign(g)
  nq = np.expand_dims(_lp(g, q, axis), axis)
  return np.sign(g) * np.abs(g) ** (q - 1) / nq ** (q - 1)


def _svd_parts(norm, g):
  """(matrices, dualize scale) of docs/design.md's table for Spectral / SpectralConv."""
  if isinstance(norm, normax.SpectralConv):
    core = g.ndim if norm.spatial_dims is None else norm.spatial_dims + 2
    batch, spatial = g.shape[: g.ndim - core], g.shape[g.ndim - core : -2]
    c_in, c_out = g.shape[-2:]
    k = math.prod(spatial)
    return g.reshape(*batch, k * c_in, c_out), math.sqrt(c_out / c_in) / k
  d_in, d_out = g.shape[-2:]
  return g, math.sqrt(d_out / d_in)


def reference(norm, g):
  """(dualize, dual_norm, norm) of ``g`` under ``norm`` per docs/design.md, in float64 numpy."""
  g = np.asarray(g, np.float64)
  if isinstance(norm, normax.Spectral):
    mats, scale = _svd_parts(norm, g)
    u, s, vt = np.linalg.svd(mats, full_matrices=False)
    if norm.method == "svd":
      ps = np.ones_like(s)
    else:
      fro = np.sqrt((s**2).sum(-1, keepdims=True))
      ps = scalar_map(norm.coefficients, norm.steps, s / fro)
    d = scale * (u * ps[..., None, :]) @ vt
    return d.reshape(g.shape), scale * s.sum(-1), s.max(-1) / scale
  if isinstance(norm, normax.Sign):
    c = 1 / g.shape[-2] if norm.normalized else 1.0
    ax = (-2, -1)
    return c * np.sign(g), c * np.abs(g).sum(ax), np.abs(g).max(ax) / c
  if isinstance(norm, normax.ColNorm):  # rows i = g[..., i, :]
    d_out = g.shape[-1]
    r = np.linalg.norm(g, axis=-1)
    return (
      math.sqrt(d_out) * g / r[..., None],
      math.sqrt(d_out) * r.sum(-1),
      r.max(-1) / math.sqrt(d_out),
    )
  if isinstance(norm, normax.RowNorm):  # cols j = g[..., :, j]
    d_in = g.shape[-2]
    c = np.linalg.norm(g, axis=-2)
    return (
      g / (math.sqrt(d_in) * c[..., None, :]),
      c.sum(-1) / math.sqrt(d_in),
      math.sqrt(d_in) * c.max(-1),
    )
  if isinstance(norm, normax.BiasRMS):
    n = g.shape[-1]
    l2 = np.linalg.norm(g, axis=-1)
    return math.sqrt(n) * g / l2[..., None], math.sqrt(n) * l2, l2 / math.sqrt(n)
  if isinstance(norm, normax.Frobenius):
    f = np.sqrt((g**2).sum((-2, -1)))
    return g / f[..., None, None], f, f
  if isinstance(norm, normax.L1ToLp):  # max_i ‖row_i‖_p
    q = _conj(norm.p)
    return _lp_maximizer(g, q, -1), _lp(g, q, -1).sum(-1), _lp(g, norm.p, -1).max(-1)
  if isinstance(norm, normax.LpToLinf):  # max_j ‖col_j‖_{p*}
    p = norm.p
    return _lp_maximizer(g, p, -2), _lp(g, p, -2).sum(-1), _lp(g, _conj(p), -2).max(-1)
  raise NotImplementedError(norm)


# -- the norms under test -----------------------------------------------------

PS = (1.0, 3.0, math.inf)
# name -> (norm, kind); kind picks the leaf layout: "mat" (..., m, n), "vec" (..., n),
# "conv1"/"conv2"/"conv3" a conv kernel (*spatial, c_in, c_out).
CASES = {
  "spectral_svd": (normax.Spectral(method="svd"), "mat"),
  "spectral_conv1d_svd": (normax.SpectralConv(method="svd"), "conv1"),
  "spectral_conv2d_svd": (normax.SpectralConv(method="svd"), "conv2"),
  "spectral_conv3d_svd": (normax.SpectralConv(method="svd"), "conv3"),
  "sign": (normax.Sign(), "mat"),
  "sign_unnormalized": (normax.Sign(normalized=False), "mat"),
  "colnorm": (normax.ColNorm(), "mat"),
  "rownorm": (normax.RowNorm(), "mat"),
  "bias_rms": (normax.BiasRMS(), "vec"),
  "frobenius": (normax.Frobenius(), "mat"),
  **{f"l1_to_l{p}": (normax.L1ToLp(p), "mat") for p in PS},
  **{f"l{p}_to_linf": (normax.LpToLinf(p), "mat") for p in PS},
}
NS_CASES = {
  "spectral_ns": (normax.Spectral(), "mat"),
  "spectral_ns_polar_express": (normax.Spectral(steps=8, coefficients="polar_express"), "mat"),
  "spectral_conv2d_ns": (normax.SpectralConv(), "conv2"),
}
ALL_CASES = {**CASES, **NS_CASES}
DIMS = (1, 3, 8)


@st.composite
def leaves(draw, kind, batch=True):
  """A (shape, float64 gaussian * scale, dtype) example for a leaf of the given kind."""
  lead = draw(st.sampled_from([(), (2, 3)])) if batch and kind in ("mat", "vec") else ()
  if kind == "mat":
    core = (draw(st.sampled_from(DIMS)), draw(st.sampled_from(DIMS)))
  elif kind == "vec":
    core = (draw(st.sampled_from(DIMS)),)
  else:
    spatial = (1, 2, 3)[: int(kind[-1])]
    core = (*spatial, draw(st.sampled_from(DIMS)), draw(st.sampled_from(DIMS)))
  scale = 10.0 ** draw(st.floats(-8, 8))
  dtype = draw(st.sampled_from([jnp.float32, jnp.bfloat16]))
  seed = draw(st.integers(0, 2**31 - 1))
  g = np.random.default_rng(seed).standard_normal((*lead, *core)) * scale
  return jnp.asarray(g, dtype)


def core_sum(norm, x):
  x = np.asarray(x, np.float64)
  return x.sum(axis=norm.core_axes(x.ndim))


def _bf16(x):
  return x.dtype == jnp.bfloat16


# -- numpy references ---------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(CASES)))
def test_exact_norms_match_numpy(name, data):
  norm, kind = CASES[name]
  g = data.draw(leaves(kind))
  ref_d, ref_dn, ref_n = reference(norm, g)
  d, dn, n = norm.dualize(g), norm.dual_norm(g), norm.norm(g)
  assert d.shape == g.shape and d.dtype == g.dtype
  assert dn.shape == n.shape == ref_dn.shape
  tol = 1e-2 if _bf16(g) else 2e-5
  if isinstance(norm, normax.Spectral):  # The polar factor's sensitivity is 1/σ_min.
    s = np.linalg.svd(_svd_parts(norm, np.asarray(g, np.float64))[0], compute_uv=False)
    tol += 1e-6 * float(np.max(s[..., 0] / s[..., -1]))
  np.testing.assert_allclose(
    np.asarray(d, np.float64), ref_d, rtol=tol, atol=tol * np.abs(ref_d).max()
  )
  np.testing.assert_allclose(np.asarray(dn, np.float64), ref_dn, rtol=2e-5)
  np.testing.assert_allclose(np.asarray(n, np.float64), ref_n, rtol=2e-5)


@settings(max_examples=6, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(NS_CASES)))
def test_newton_schulz_norms_match_their_polynomial(name, data):
  """Newton–Schulz dualize is ``scale · U p(Σ/‖G‖_F) Vᵀ`` with ``p`` the composed schedule."""
  norm, kind = NS_CASES[name]
  g = data.draw(leaves(kind))
  ref_d, ref_dn, ref_n = reference(norm, g)
  d = np.asarray(norm.dualize(g), np.float64)
  # Rounding errors at small singular values are amplified by p'(0) per step (≈ 3.4 for the
  # quintic, ≈ 7.5 for Polar Express's first step): an absolute bound on entries.
  tol = 3e-2 if _bf16(g) else 2e-3
  np.testing.assert_allclose(d, ref_d, atol=tol * np.abs(ref_d).max())
  np.testing.assert_allclose(np.asarray(norm.dual_norm(g), np.float64), ref_dn, rtol=2e-5)
  np.testing.assert_allclose(np.asarray(norm.norm(g), np.float64), ref_n, rtol=2e-5)


# -- the LMO identities -------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(CASES)))
def test_lmo_identities_exact(name, data):
  """⟨g, dualize(g)⟩ = dual_norm(g), norm(dualize(g)) = 1, lmo = -dualize, and Hölder."""
  norm, kind = CASES[name]
  g = data.draw(leaves(kind))
  d = norm.dualize(g)
  tol = 2e-2 if _bf16(g) else 2e-5
  dn = np.asarray(norm.dual_norm(g), np.float64)
  inner = core_sum(norm, np.asarray(g, np.float64) * np.asarray(d))
  np.testing.assert_allclose(inner, dn, rtol=tol)
  np.testing.assert_allclose(np.asarray(norm.norm(d), np.float64), 1.0, rtol=tol)
  np.testing.assert_array_equal(norm.lmo(g), -d)
  # dual_norm really is the dual of norm: ⟨g, t⟩ ≤ dual_norm(g) · norm(t) for any t.
  t = np.random.default_rng(0).standard_normal(g.shape)
  lhs = core_sum(norm, np.asarray(g, np.float64) * t)
  rhs = dn * np.asarray(norm.norm(jnp.asarray(t, jnp.float32)), np.float64)
  assert np.all(lhs <= rhs * (1 + 1e-5) + 1e-30)


@settings(max_examples=6, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(NS_CASES)))
def test_lmo_identities_newton_schulz_within_schedule_bound(name, data):
  """For Newton–Schulz the identities hold up to the schedule's singular-value range.

  With ``[lo, hi] = normax.schedule_bound(schedule, steps, lower=σ_min/‖G‖_F)``:
  ``lo ≤ ⟨g, dualize(g)⟩ / dual_norm(g) ≤ hi`` (a σ-weighted mean of ``p(σᵢ/‖G‖_F)``) and
  ``lo ≤ norm(dualize(g)) ≤ hi``.
  """
  norm, kind = NS_CASES[name]
  g = data.draw(leaves(kind))
  mats = _svd_parts(norm, np.asarray(g, np.float64))[0]
  s = np.linalg.svd(mats, compute_uv=False)
  lower = float(np.min(s[..., -1] / np.linalg.norm(s, axis=-1)))
  lo, hi = normax.schedule_bound(norm.coefficients, norm.steps, lower=max(lower, 1e-12))
  slack = 3e-2 if _bf16(g) else 2e-3
  d = norm.dualize(g)
  ratio = core_sum(norm, np.asarray(g, np.float64) * np.asarray(d)) / np.asarray(
    norm.dual_norm(g), np.float64
  )
  assert np.all(ratio >= lo - slack) and np.all(ratio <= hi + slack), (ratio, lo, hi)
  n = np.asarray(norm.norm(d), np.float64)
  assert np.all(n >= lo - slack) and np.all(n <= hi + slack), (n, lo, hi)
  np.testing.assert_array_equal(norm.lmo(g), -d)


# -- init ---------------------------------------------------------------------


@pytest.mark.parametrize(
  "name,dtype",
  [(n, jnp.float32) for n in sorted(ALL_CASES)]
  + [(n, jnp.bfloat16) for n in ("spectral_svd", "spectral_conv2d_ns", "sign", "bias_rms")],
)
def test_init_lies_on_the_unit_sphere(name, dtype):
  norm, kind = ALL_CASES[name]
  # Shapes shared with the other tests, so their compiled kernels are reused.
  shape = (3, *_example_shape(kind)) if kind in ("mat", "vec") else _example_shape(kind)
  w = norm.init(jax.random.key(1), shape, dtype)
  assert w.shape == shape and w.dtype == dtype
  n = np.asarray(norm.norm(w), np.float64)
  assert n.shape == shape[: len(shape) - norm.core_ndim(len(shape))]
  np.testing.assert_allclose(n, 1.0, rtol=2e-2 if dtype == jnp.bfloat16 else 1e-5)
  np.testing.assert_allclose(n, reference(norm, w)[2], rtol=1e-5)
  w2 = norm.init(jax.random.key(2), shape, dtype)
  assert not np.array_equal(np.asarray(w, np.float32), np.asarray(w2, np.float32))


# -- registry -----------------------------------------------------------------


def test_string_names_resolve_through_the_registry():
  expected = {
    "spectral": normax.Spectral(),
    "spectral_conv": normax.SpectralConv(),
    "sign": normax.Sign(),
    "sign_unnormalized": normax.Sign(normalized=False),
    "colnorm": normax.ColNorm(),
    "rownorm": normax.RowNorm(),
    "bias_rms": normax.BiasRMS(),
    "frobenius": normax.Frobenius(),
    "l1_to_lp": normax.L1ToLp(),
    "lp_to_linf": normax.LpToLinf(),
  }
  assert set(expected) <= set(normax.available_norms())
  for name, norm in expected.items():
    assert normax.get_norm(name) == norm
    assert norm.name == name or name == "sign_unnormalized"
  assert normax.get_norm("l1_to_lp", p=3) == normax.L1ToLp(3.0)
  assert normax.get_norm("spectral", method="svd", steps=7) == normax.Spectral("svd", 7)
  n = normax.Frobenius()
  assert normax.get_norm(n) is n
  with pytest.raises(ValueError, match="Unknown norm 'spectrall'.*spectral"):
    normax.get_norm("spectrall")
  with pytest.raises(ValueError, match=r"p must be a number in \[1, inf\]"):
    normax.L1ToLp(0.5)


# -- equivalences from the papers ---------------------------------------------


@pytest.mark.parametrize("shape", [(1, 5), (2, 3, 4)])
def test_adam_without_emas_is_sign_descent(shape):
  """optax.adam(lr, b1=0, b2=0, eps=0) steps along -sign(g) = -d_in · Sign().dualize(g)."""
  g = jax.random.normal(jax.random.key(0), shape)  # No exact zeros: Adam would give 0/0.
  lr = 0.1
  adam = optax.adam(lr, b1=0.0, b2=0.0, eps=0.0)
  state = adam.init(jnp.zeros(shape))
  for _ in range(2):  # Also after the first step: nothing is remembered.
    u, state = adam.update(g, state)
    np.testing.assert_allclose(u, -lr * normax.Sign(normalized=False).dualize(g), rtol=1e-6)
    np.testing.assert_allclose(u, -lr * shape[-2] * normax.Sign().dualize(g), rtol=1e-6)
    g = -2.0 * g


# -- zeros, non-finite gradients, wrong ranks ---------------------------------


def _example_shape(kind):
  # Every spectral example is a 12×4 matrix (conv kernels after their reshape), so the SVD and
  # Newton–Schulz kernels compiled for one test are reused by the others.
  return {
    "mat": (12, 4),
    "vec": (5,),
    "conv1": (4, 3, 4),
    "conv2": (2, 2, 3, 4),
    "conv3": (1, 2, 2, 3, 4),
  }[kind]


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_each_norm_matches_numpy_gives_zero_on_zero_and_propagates_non_finite(name):
  norm, kind = ALL_CASES[name]
  shape = _example_shape(kind)
  # Every norm meets its reference (the hypothesis tests above sample norms at random).
  g = jax.random.normal(jax.random.key(0), shape)
  got_all = (norm.dualize(g), norm.dual_norm(g), norm.norm(g))
  for got, want in zip(got_all, reference(norm, g), strict=True):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-3, atol=1e-4)
  for dtype in (jnp.float32, jnp.bfloat16):
    z = jnp.zeros(shape, dtype)
    d = norm.dualize(z)
    assert d.dtype == dtype
    np.testing.assert_array_equal(np.asarray(d, np.float32), 0.0)  # Also: no NaN.
    np.testing.assert_array_equal(np.asarray(norm.lmo(z), np.float32), 0.0)
    np.testing.assert_array_equal(norm.dual_norm(z), 0.0)
    np.testing.assert_array_equal(norm.norm(z), 0.0)
  # A NaN/inf entry shows up as non-finite, so optax.apply_if_finite can skip the step.
  for bad in (np.nan, np.inf, -np.inf):
    b = g.at[(0,) * len(shape)].set(bad)
    for out in (norm.dualize(b), norm.dual_norm(b), norm.norm(b)):
      assert not bool(jnp.all(jnp.isfinite(out))), (name, bad, out)


@pytest.mark.parametrize("name", ["spectral_svd", "spectral_ns", "sign", "colnorm", "bias_rms"])
def test_a_zero_matrix_in_a_stack_does_not_disturb_its_neighbours(name):
  norm, kind = ALL_CASES[name]
  shape = (2, *_example_shape(kind))
  g = jnp.zeros(shape).at[1].set(jax.random.normal(jax.random.key(0), shape[1:]))
  d = norm.dualize(g)
  np.testing.assert_array_equal(d[0], 0.0)
  np.testing.assert_allclose(d[1], norm.dualize(g[1]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
  "norm,shape,hint",
  [
    (normax.Spectral(), (5,), "normax.BiasRMS()"),
    (normax.Spectral(method="svd"), (), "normax.BiasRMS()"),
    (normax.SpectralConv(), (4, 5), "normax.Spectral()"),
    (normax.SpectralConv(spatial_dims=2), (3, 4, 5), "normax.Spectral()"),
    (normax.Sign(), (5,), "normax.Sign(normalized=False)"),
    (normax.ColNorm(), (5,), "normax.BiasRMS()"),
    (normax.RowNorm(), (5,), "normax.BiasRMS()"),
    (normax.L1ToLp(3.0), (5,), "normax.BiasRMS()"),
    (normax.LpToLinf(3.0), (5,), "normax.BiasRMS()"),
  ],
)
def test_wrong_rank_raises_at_trace_time_naming_shape_and_fix(norm, shape, hint):
  x = jnp.zeros(shape)
  for fn in (norm.dualize, norm.lmo, norm.dual_norm, norm.norm):
    with pytest.raises(ValueError, match="got shape " + re.escape(str(shape))) as info:
      jax.jit(fn)(x)  # Raised while tracing: the function never runs.
    assert hint in str(info.value) and type(norm).__name__ in str(info.value)
  with pytest.raises(ValueError, match=re.escape(hint)):
    norm.init(jax.random.key(0), shape)


def test_conv_kernel_with_too_many_spatial_axes_asks_for_spatial_dims():
  with pytest.raises(ValueError, match=r"\(2, 2, 2, 2, 3, 4\).*spatial_dims"):
    normax.SpectralConv().dualize(jnp.zeros((2, 2, 2, 2, 3, 4)))


def test_integer_leaves_are_rejected():
  with pytest.raises(TypeError, match="int32.*floating-point"):
    normax.Spectral().dualize(jnp.zeros((3, 4), jnp.int32))


# -- jit and vmap -------------------------------------------------------------

VMAP_CASES = {
  **ALL_CASES,
  # A stack of conv kernels needs spatial_dims to tell batch axes from spatial ones.
  "spectral_conv2d_ns": (normax.SpectralConv(spatial_dims=2), "conv2"),
  "spectral_conv1d_svd": (normax.SpectralConv(spatial_dims=1, method="svd"), "conv1"),
}
del VMAP_CASES["spectral_conv2d_svd"], VMAP_CASES["spectral_conv3d_svd"]


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize("name", sorted(VMAP_CASES))
def test_jit_and_vmap_agree_with_the_batched_call(name):
  norm, kind = VMAP_CASES[name]
  g = jax.random.normal(jax.random.key(0), (3, *_example_shape(kind)))
  for method in ("dualize", "dual_norm"):
    fn = getattr(norm, method)
    batched = fn(g)
    np.testing.assert_allclose(jax.jit(fn)(g), batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(g), batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn(g[1]), batched[1], rtol=1e-5, atol=1e-6)
  # Norms are static, hashable config: they can be jit's static arguments.
  f = jax.jit(lambda n, x: n.dualize(x), static_argnums=0)
  np.testing.assert_allclose(f(norm, g), norm.dualize(g), rtol=1e-5, atol=1e-6)
  assert hash(norm) == hash(dataclasses.replace(norm))
