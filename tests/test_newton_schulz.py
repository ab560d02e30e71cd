"""Newton–Schulz schedules against a float64 numpy iteration, the SVD, and schedule_bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import newton_schulz as numpy_newton_schulz
from _reference import scalar_map

import normax
from normax._schedules import resolve_coefficients

SCHEDULES = {  # name -> (coefficients, steps)
  "quintic5": ("quintic", 5),
  "polar_express5": ("polar_express", 5),
  "polar_express8": ("polar_express", 8),
  "cubic12": ("cubic", 12),
  "user_triple": ((3.0, -3.2, 1.2), 6),
  "user_per_step": (((4.0, -4.0, 1.0), (3.0, -2.5, 0.5), (1.875, -1.25, 0.375)), 5),
}


def matrix(kind, seed=0):
  """Random gaussian (square, tall, wide) or 16×16 with a log-spaced spectrum of given cond."""
  rng = np.random.default_rng(seed)
  if kind in ("square", "tall", "wide"):
    shape = {"square": (16, 16), "tall": (24, 10), "wide": (10, 24)}[kind]
    return rng.standard_normal(shape)
  cond = float(kind)
  u, _ = np.linalg.qr(rng.standard_normal((16, 16)))
  v, _ = np.linalg.qr(rng.standard_normal((16, 16)))
  return (u * np.geomspace(1.0, 1.0 / cond, 16)) @ v.T


KINDS = ["square", "tall", "wide", "1e2", "1e4", "1e6"]


@pytest.mark.parametrize("sched", sorted(SCHEDULES))
@pytest.mark.parametrize("kind", KINDS)
def test_schedule_matches_numpy_and_stays_within_schedule_bound(sched, kind):
  coefficients, steps = SCHEDULES[sched]
  g = matrix(kind)
  x = np.asarray(
    normax.newton_schulz(jnp.asarray(g, jnp.float32), steps=steps, coefficients=coefficients),
    np.float64,
  )
  # 1. The float64 numpy iteration (rounding grows by at most max|p'| per step).
  np.testing.assert_allclose(x, numpy_newton_schulz(g, coefficients, steps), atol=2e-4)
  # 2. Singular vectors are kept: Uᵀ X V = p(Σ / ‖G‖_F), diagonal.
  u, s, vt = np.linalg.svd(g, full_matrices=False)
  fro = np.linalg.norm(s)
  core = u.T @ x @ vt.T
  np.testing.assert_allclose(np.diag(core), scalar_map(coefficients, steps, s / fro), atol=2e-4)
  np.testing.assert_allclose(core - np.diag(np.diag(core)), 0.0, atol=2e-4)
  # 3. The documented range: singular values within schedule_bound(lower=σ_min/‖G‖_F).
  lo, hi = normax.schedule_bound(coefficients, steps, lower=s[-1] / fro)
  sx = np.linalg.svd(x, compute_uv=False)
  assert lo - 2e-4 <= sx.min() and sx.max() <= hi + 2e-4, (sx, lo, hi)
  # 4. Distance to the exact polar factor is at most max |p - 1| on that range.
  polar = np.asarray(normax.orthogonalize_svd(jnp.asarray(g, jnp.float32)), np.float64)
  # orthogonalize_svd drops singular values below float32's resolution (σ_max·max(m, n)·eps).
  keep = s > s[0] * max(g.shape) * np.finfo(np.float32).eps
  # Its singular vectors carry float32 rounding amplified by 1/σ (matters at cond 1e6).
  atol = 1e-4 + 3e-9 * s[0] / s[keep].min()
  np.testing.assert_allclose(polar, (u * keep) @ vt, atol=atol)
  assert np.linalg.norm(x - u @ vt, 2) <= max(1 - lo, hi - 1) + 2e-4


def test_schedule_bound_contains_the_map_and_is_attained():
  rng = np.random.default_rng(0)
  for coefficients, steps in SCHEDULES.values():
    for lower in (1e-6, 1e-3, 0.1):
      lo, hi = normax.schedule_bound(coefficients, steps, lower=lower)
      xs = np.exp(rng.uniform(np.log(lower), 0.0, 5000))
      p = scalar_map(coefficients, steps, np.concatenate([xs, [lower, 1.0]]))
      assert lo - 1e-6 <= p.min() and p.max() <= hi + 1e-6  # A dense grid, not exact.
      # Attained up to the grid's resolution: a dense grid gets within 1e-3 of both ends.
      dense = scalar_map(coefficients, steps, np.geomspace(lower, 1.0, 200001))
      assert dense.min() - lo < 1e-3 and hi - dense.max() < 1e-3
  # What the schedules are designed for (documented in docs/newton_schulz.md):
  lo, hi = normax.schedule_bound("polar_express", 8, lower=1e-3)
  assert 0.999 < lo <= hi < 1.001
  lo, hi = normax.schedule_bound("quintic", 5, lower=1e-2)
  assert 0.6 < lo and hi < 1.25  # The classic quintic oscillates around 1 by design.
  lo, hi = normax.schedule_bound("cubic", 30, lower=1e-2)
  assert 0.99 < lo and hi <= 1.0  # Slow but monotone convergence to 1.


@pytest.mark.parametrize("sched", ["quintic5", "polar_express8"])
def test_tall_and_wide_give_transposed_results(sched):
  coefficients, steps = SCHEDULES[sched]
  g = jnp.asarray(matrix("tall"), jnp.float32)
  ns = lambda x: normax.newton_schulz(x, steps=steps, coefficients=coefficients)
  np.testing.assert_allclose(ns(g.T), ns(g).T, atol=2e-5)
  # The Gram matrix is formed on the short side: no 24×24 product appears.
  jaxpr = jax.make_jaxpr(ns)(g)
  outs = [e.outvars[0].aval.shape for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert outs and all(24 not in o[-2:] or o[-2:] in ((24, 10), (10, 24)) for o in outs), outs
  assert (24, 24) not in outs and (10, 10) in outs


def test_frobenius_pre_normalization_makes_it_scale_invariant():
  g = jnp.asarray(matrix("square"), jnp.float32)
  ref = normax.newton_schulz(g)
  for c in (1e-8, 1e-3, 1e3, 1e8):
    np.testing.assert_allclose(normax.newton_schulz(c * g), ref, atol=2e-5, rtol=1e-4)
  np.testing.assert_array_equal(normax.newton_schulz(jnp.zeros((3, 5))), 0.0)
  stack = jnp.stack([g, 1e6 * g, jnp.zeros_like(g)])  # Each matrix normalized on its own.
  out = normax.newton_schulz(stack)
  np.testing.assert_allclose(out[1], ref, atol=2e-5, rtol=1e-4)
  np.testing.assert_array_equal(out[2], 0.0)


@pytest.mark.parametrize("kind", ["square", "1e2"])
def test_bfloat16_compute_with_float32_accumulation(kind):
  g = jnp.asarray(matrix(kind), jnp.float32)
  coefficients, steps = SCHEDULES["polar_express8"]
  ns = lambda x: normax.newton_schulz(
    x, steps=steps, coefficients=coefficients, compute_dtype=jnp.bfloat16
  )
  x = ns(g)
  assert x.dtype == jnp.float32
  # Every matmul takes bfloat16 operands and accumulates in float32.
  dots = [e for e in jax.make_jaxpr(ns)(g).eqns if e.primitive.name == "dot_general"]
  assert dots
  for e in dots:
    assert [v.aval.dtype for v in e.invars] == [jnp.bfloat16] * 2
    assert e.outvars[0].aval.dtype == jnp.float32
  # Singular values: bfloat16 rounding (2^-8 relative per step) widens the float64 bound.
  x = np.asarray(x, np.float64)
  s = np.linalg.svd(np.asarray(g, np.float64), compute_uv=False)
  lo, hi = normax.schedule_bound(coefficients, steps, lower=s[-1] / np.linalg.norm(s))
  sx = np.linalg.svd(x, compute_uv=False)
  assert lo - 0.05 <= sx.min() and sx.max() <= hi + 0.05, (sx, lo, hi)
  polar = np.asarray(normax.orthogonalize_svd(g), np.float64)
  assert np.linalg.norm(x - polar, 2) <= max(1 - lo, hi - 1) + 0.05
  # bfloat16 input: float32 inside, bfloat16 out.
  xb = normax.newton_schulz(g.astype(jnp.bfloat16), steps=steps, coefficients=coefficients)
  assert xb.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(xb, np.float64), polar, atol=0.05)


def test_user_coefficients_and_their_errors():
  g = jnp.asarray(matrix("wide"), jnp.float32)
  np.testing.assert_array_equal(
    normax.newton_schulz(g, coefficients=normax.QUINTIC), normax.newton_schulz(g)
  )
  assert normax.QUINTIC == (3.4445, -4.7750, 2.0315)  # The classic Muon quintic.
  assert resolve_coefficients("cubic", 2) == ((1.5, -0.5, 0.0),) * 2
  # A shorter sequence repeats its last triple.
  short = ((4.0, -4.0, 1.0), (3.0, -2.5, 0.5))
  np.testing.assert_array_equal(
    normax.newton_schulz(g, steps=4, coefficients=short),
    normax.newton_schulz(g, steps=4, coefficients=short + (short[-1],) * 2),
  )
  pe = normax.polar_express_coefficients(8)
  assert len(pe) == 8 and resolve_coefficients("polar_express", 8) == pe
  with pytest.raises(ValueError, match="3 coefficient triples were given for 2 steps"):
    normax.newton_schulz(g, steps=2, coefficients=pe[:3])
  with pytest.raises(ValueError, match=r"got \(\(1.0, 2.0\), \(3.0, 4.0\)\) \(shape \(2, 2\)\)"):
    normax.newton_schulz(g, coefficients=((1.0, 2.0), (3.0, 4.0)))
  with pytest.raises(ValueError, match="Unknown Newton–Schulz schedule 'quintik'"):
    normax.newton_schulz(g, coefficients="quintik")
  with pytest.raises(ValueError, match=r"needs a matrix \(\.\.\., m, n\); got shape \(5,\)"):
    normax.newton_schulz(jnp.ones(5))
  with pytest.raises(ValueError, match=r"lower must be a number in \(0, 1\)"):
    normax.polar_express_coefficients(5, lower=2.0)
  with pytest.raises(ValueError, match="steps must be an integer >= 1"):
    normax.polar_express_coefficients(0)


def test_spectral_passes_its_options_to_newton_schulz():
  g = jnp.asarray(matrix("tall"), jnp.float32)
  spec = normax.Spectral(steps=3, coefficients=[[4.0, -4.0, 1.0]], compute_dtype="bfloat16")
  want = normax.newton_schulz(
    g, steps=3, coefficients=(4.0, -4.0, 1.0), compute_dtype=jnp.bfloat16
  ) * np.sqrt(10 / 24)
  np.testing.assert_allclose(spec.dualize(g), want, rtol=1e-6)


def test_doc_script_runs_and_checks(tmp_path):
  """docs/make_newton_schulz.py renders, and --check accepts its own output (tiny size)."""
  import importlib.util
  import pathlib

  root = pathlib.Path(__file__).parents[1]
  spec = importlib.util.spec_from_file_location("make_ns", root / "docs/make_newton_schulz.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  mod.STEPS, mod.MATRICES, mod.PRE_STEPS = (2, 5), ("gaussian", "cond 1e4"), (0, 5)
  out = tmp_path / "ns.md"
  assert mod.main(["--size", "8", "--out", str(out)]) == 0
  assert mod.main(["--size", "8", "--out", str(out), "--check"]) == 0
  out.write_text(out.read_text().replace("1.0000", "1.5000"))
  assert mod.main(["--size", "8", "--out", str(out), "--check"]) == 1
  # The committed doc is the script's output at size 128 (`--check` recomputes it).
  doc = (root / "docs/newton_schulz.md").read_text()
  # Schedule tables: 4 matrices × 9 rows × 4 step counts; preconditioning tables: 4 matrices ×
  # 4 preconditionings × (4 + 4 step counts for quintic and polar_express, 2 for dion).
  assert "Size used: 128." in doc and len(mod.numbers(doc)) == 2 * (4 * 9 * 4 + 4 * 4 * 10)


@pytest.mark.parametrize("sched", sorted(SCHEDULES))
@pytest.mark.parametrize("gram", [False, True], ids=["plain", "gram"])
def test_bounded_keeps_every_singular_value_at_most_one(sched, gram):
  coefficients, steps = SCHEDULES[sched]
  peak = normax.schedule_bound(coefficients, steps, lower=1e-12)[1]
  for kind in ("wide", "1e2", "1e4", "1e6"):
    g = matrix(kind)
    g = np.concatenate([g, g], axis=1)  # 16×32 (or 10×48): wide enough for the Gram form.
    run = lambda bounded, g=g: normax.newton_schulz(  # noqa: E731
      jnp.asarray(g, jnp.float32), steps=steps, coefficients=coefficients, gram=gram,
      bounded=bounded,
    )  # fmt: skip
    s = np.linalg.svd(np.asarray(run(True), np.float64), compute_uv=False)
    assert s.max() <= 1 + 1e-5, (kind, s.max(), peak)
    # The cubic (3x - x³)/2 applied to the schedule's own singular values (divided by the
    # schedule's peak first where that is past the cubic's reach, √3).
    s0 = np.linalg.svd(np.asarray(run(False), np.float64), compute_uv=False)
    # A schedule that ends within 1e-4 of 1 (cubic, 8 Polar Express steps) is left alone.
    s0 = s0 / peak if peak > 0.99 * np.sqrt(3) else s0
    want = np.sort(1.5 * s0 - 0.5 * s0**3)[::-1] if peak > 1 + 1e-4 else s0  # Sorted again.
    np.testing.assert_allclose(s, want, atol=1e-4, err_msg=f"{kind} {peak}")


def test_bounded_narrows_the_quintic_band_and_divides_a_steep_schedule_by_its_peak():
  g = matrix("1e2")
  u, s, vt = np.linalg.svd(g)
  x = normax.newton_schulz(jnp.asarray(g, jnp.float32), bounded=True)
  sx = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  assert sx.min() > 0.86 and sx.max() <= 1 + 1e-6  # The quintic alone: [0.68, 1.134].
  # A schedule far past √3: divided by its peak first, then the cubic.
  steep = (6.0, -2.0, 0.0)
  assert normax.schedule_bound(steep, 1, lower=1e-12)[1] > 3
  y = normax.newton_schulz(jnp.asarray(g, jnp.float32), steps=1, coefficients=steep, bounded=True)
  assert np.linalg.svd(np.asarray(y, np.float64), compute_uv=False).max() <= 1 + 1e-6
  zero = jnp.zeros((4, 6))
  np.testing.assert_array_equal(normax.newton_schulz(zero, bounded=True), zero)


def test_spectral_bounded_and_for_constraint():
  g = jnp.asarray(matrix("1e4"), jnp.float32)
  assert float(normax.Spectral().norm(normax.Spectral().dualize(g))) > 1.1  # The quintic.
  bounded = normax.Spectral(bounded=True)
  assert float(bounded.norm(bounded.dualize(g))) <= 1 + 1e-5
  assert normax.Spectral().for_constraint() == bounded
  assert normax.Spectral(bounded=False).for_constraint() == normax.Spectral(bounded=False)
  assert normax.SpectralConv().for_constraint().bounded is True
  for norm in (normax.Sign(), normax.ColNorm(), normax.BiasRMS(), normax.L1ToLp(3.0)):
    assert norm.for_constraint() is norm
  with pytest.raises(TypeError, match="bounded must be None, True or False"):
    normax.Spectral(bounded="yes")
