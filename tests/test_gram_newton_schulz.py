"""The Gram form of Newton–Schulz against a float64 numpy run of the plain iteration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import newton_schulz as plain_reference

import normax
from normax._newton_schulz import newton_schulz


def conditioned(shape, lowest, seed=0):
  """A random matrix (batch) whose singular values are spread geometrically over [lowest, 1]."""
  rng = np.random.default_rng(seed)
  u, _, vt = np.linalg.svd(rng.normal(size=shape), full_matrices=False)
  s = np.geomspace(1.0, lowest, min(shape[-2:]))
  return jnp.asarray((u * s) @ vt, jnp.float32)


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (3, 24, 80), (2, 90, 30), (20, 20)])
@pytest.mark.parametrize("coefficients", ["quintic", "polar_express", "cubic"])
def test_gram_form_matches_the_plain_polynomial(shape, coefficients):
  x = conditioned(shape, 1e-3)
  ref = plain_reference(x, coefficients, 5)
  out = np.asarray(newton_schulz(x, coefficients=coefficients, gram=True), np.float64)
  assert out.shape == shape
  np.testing.assert_allclose(out, ref, atol=2e-3 * np.abs(ref).max())
  plain = np.asarray(newton_schulz(x, coefficients=coefficients), np.float64)
  np.testing.assert_allclose(plain, ref, atol=2e-4 * np.abs(ref).max())


def test_gram_auto_choice_and_edge_cases():
  x = conditioned((8, 40), 1e-2)
  ref = plain_reference(x, "quintic", 5)
  # None picks the Gram form for aspect >= GRAM_MIN_ASPECT in float32 and matches either way.
  for gram in (None, True, False):
    np.testing.assert_allclose(newton_schulz(x, gram=gram), ref, atol=1e-4)
  zero = jnp.zeros((4, 12))
  np.testing.assert_array_equal(newton_schulz(zero, gram=True), zero)
  np.testing.assert_allclose(
    newton_schulz(x, steps=0, gram=True), x / jnp.linalg.norm(x), rtol=1e-6
  )
  bf = newton_schulz(x.astype(jnp.bfloat16), gram=True)
  assert bf.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf, np.float64), ref, atol=3e-2)


def test_spectral_gram_method_and_muon():
  g = conditioned((32, 128), 1e-2)
  plain = normax.Spectral().dualize(g)
  gram = normax.Spectral(method="gram_newton_schulz").dualize(g)
  np.testing.assert_allclose(gram, plain, atol=5e-4 * float(jnp.abs(plain).max()))
  with pytest.raises(ValueError, match="gram_newton_schulz"):
    normax.Spectral(method="gram")
  params = {"w": jnp.ones((32, 128)) * 0.1, "b": jnp.zeros((128,))}
  grads = {"w": g, "b": jnp.ones((128,))}
  ups = {}
  for method in ("newton_schulz", "gram_newton_schulz"):
    tx = normax.muon(0.1, orthogonalizer=normax.Orthogonalizer(method=method))
    ups[method], _ = jax.jit(tx.update)(grads, tx.init(params), params)
  w_plain = ups["newton_schulz"]["w"]
  w_gram = ups["gram_newton_schulz"]["w"]
  np.testing.assert_allclose(w_gram, w_plain, atol=1e-3 * abs(w_plain).max())
  np.testing.assert_allclose(ups["gram_newton_schulz"]["b"], ups["newton_schulz"]["b"])


@pytest.mark.parametrize("steps", [6, 8, 12])
def test_gram_form_stays_at_its_schedule_bound_with_many_steps(steps):
  # Without a restart, 8 Polar Express steps in Gram form reached σ = 1.19 at condition 1e4
  # (the schedule's bound: 1.000003; the plain iteration stays there).
  x = conditioned((32, 512), 1e-4)
  _, hi = normax.schedule_bound("polar_express", steps, lower=1e-12)
  for gram in (False, True):
    out = newton_schulz(x, steps=steps, coefficients="polar_express", gram=gram)
    s = np.linalg.svd(np.asarray(out, np.float64), compute_uv=False)
    assert s.max() <= hi + 1e-3, (gram, s.max(), hi)
