"""Named optimizers against independent numpy implementations of the papers' algorithms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

# -- numpy LMOs (the paper's sign: lmo(g) = argmin_{‖t‖≤1} ⟨g, t⟩) -------------


def np_lmo(name, g):
  g = np.asarray(g, np.float64)
  if name == "spectral":
    u, _, vt = np.linalg.svd(g, full_matrices=False)
    return -np.sqrt(g.shape[1] / g.shape[0]) * (u @ vt)
  if name == "sign":
    return -np.sign(g) / g.shape[0]
  if name == "sign_unnormalized":
    return -np.sign(g)
  if name == "colnorm":  # Each row (one input unit's weights) to ℓ2 = √d_out.
    return -np.sqrt(g.shape[1]) * g / np.linalg.norm(g, axis=1, keepdims=True)
  if name == "rownorm":  # Each column to ℓ2 = 1/√d_in.
    return -g / (np.sqrt(g.shape[0]) * np.linalg.norm(g, axis=0, keepdims=True))
  if name == "bias_rms":
    return -np.sqrt(g.size) * g / np.linalg.norm(g)
  if name == "frobenius":
    return -g / np.linalg.norm(g)
  raise ValueError(name)


def np_dual_norm(name, g):
  g = np.asarray(g, np.float64)
  if name == "spectral":
    return np.sqrt(g.shape[1] / g.shape[0]) * np.linalg.svd(g, compute_uv=False).sum()
  if name == "sign":
    return np.abs(g).sum() / g.shape[0]
  if name == "bias_rms":
    return np.sqrt(g.size) * np.linalg.norm(g)
  if name == "frobenius":
    return np.linalg.norm(g)
  raise ValueError(name)


NORM_OBJECTS = {
  "spectral": normax.Spectral(method="svd"),
  "sign": normax.Sign(),
  "sign_unnormalized": normax.Sign(normalized=False),
  "colnorm": normax.ColNorm(),
  "rownorm": normax.RowNorm(),
  "bias_rms": normax.BiasRMS(),
  "frobenius": normax.Frobenius(),
}


def mlp_params(seed=0):
  rng = np.random.default_rng(seed)
  shapes = {
    "embed": (7, 6),
    "hidden": {"kernel": (6, 5), "bias": (5,)},
    "hidden2": {"kernel": (5, 4), "bias": (4,)},
    "head": {"kernel": (4, 3), "bias": (3,)},
  }
  return jax.tree.map(
    lambda s: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32),
    shapes,
    is_leaf=lambda x: isinstance(x, tuple),
  )


def random_grads(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)


def mlp_labels(embed_norm):
  return {
    "embed": embed_norm,
    "hidden": {"kernel": "spectral", "bias": "bias_rms"},
    "hidden2": {"kernel": "rownorm", "bias": "bias_rms"},
    "head": {"kernel": "sign", "bias": "bias_rms"},
  }


RADII = {
  "spectral": 3.0,
  "sign": 10.0,
  "sign_unnormalized": 0.5,
  "colnorm": 1.5,
  "rownorm": 2.0,
  "bias_rms": 0.7,
}


@pytest.mark.parametrize("embed_norm", ["colnorm", "sign_unnormalized"])
@pytest.mark.parametrize("constrained", [True, False])
def test_scion_matches_numpy_algorithm(embed_norm, constrained):
  lr, alpha, steps = 0.05, 0.1, 4
  labels = mlp_labels(embed_norm)
  specs = {name: normax.LayerSpec(NORM_OBJECTS[name], RADII[name]) for name in RADII}
  tx = normax.scion(lr, specs, labels, beta=1 - alpha, constrained=constrained)
  params = mlp_params()
  state = tx.init(params)
  update = jax.jit(tx.update)

  flat_labels = jax.tree.leaves(labels)
  x = [np.asarray(p, np.float64) for p in jax.tree.leaves(params)]
  d = [np.zeros_like(v) for v in x]
  for t in range(steps):
    grads = random_grads(params, seed=100 + t)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for i, (g, name) in enumerate(zip(jax.tree.leaves(grads), flat_labels, strict=True)):
      d[i] = (1 - alpha) * d[i] + alpha * np.asarray(g, np.float64)
      step = lr * RADII[name] * np_lmo(name, d[i])
      x[i] = ((1 - lr) * x[i] if constrained else x[i]) + step
    for got, want in zip(jax.tree.leaves(params), x, strict=True):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_scion_spec_decay_overrides_default():
  lr, mu, rho = 0.2, 0.5, 2.0
  specs = {"w": normax.LayerSpec(normax.Spectral(method="svd"), rho, decay=mu)}
  tx = normax.scion(lr, specs, {"w": "w"}, beta=0.0, constrained=True)
  params = {"w": jnp.asarray(np.random.default_rng(1).standard_normal((4, 6)), jnp.float32)}
  g = random_grads(params, 2)
  u, _ = tx.update(g, tx.init(params), params)
  want = (1 - lr * mu) * np.asarray(params["w"]) + lr * rho * np_lmo("spectral", g["w"])
  np.testing.assert_allclose(params["w"] + u["w"], want, rtol=1e-5, atol=1e-6)


def test_scion_labels_callable_and_unknown_label_error():
  params = mlp_params()
  specs = {"hidden": normax.LayerSpec("spectral"), "bias": normax.LayerSpec("bias_rms")}

  def labels(tree):
    return jax.tree.map(lambda x: "hidden" if x.ndim == 2 else "bias", tree)

  tx = normax.scion(0.1, specs, labels)
  state = tx.init(params)
  updates, _ = tx.update(random_grads(params, 0), state, params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)

  bad = mlp_labels("embedding")
  with pytest.raises(ValueError, match=r"(?s)'embedding': embed .*'spectral': hidden/kernel "):
    normax.scion(0.1, specs, bad).init(params)


def test_scion_rejects_non_spec():
  with pytest.raises(TypeError, match="LayerSpec"):
    normax.scion(0.1, {"w": "spectral"}, {"w": "w"})


# (Muon: tests/test_muon.py)


# -- steepest descent, sign descent, normalized SGD --------------------------


def small_tree():
  rng = np.random.default_rng(5)
  return {
    "w": jnp.asarray(rng.standard_normal((4, 6)), jnp.float32),
    "h": jnp.asarray(rng.standard_normal((3, 5)), jnp.float32),
    "b": jnp.asarray(rng.standard_normal(6), jnp.float32),
  }


STEEPEST_NORMS = {"w": "spectral", "h": "sign", "b": "bias_rms"}


@pytest.mark.parametrize("sharpness", [1.0, 4.0])
def test_steepest_descent_matches_numpy(sharpness):
  g = small_tree()
  norms = {k: NORM_OBJECTS[v] for k, v in STEEPEST_NORMS.items()}
  tx = normax.steepest_descent(0.3, norms, sharpness)
  u, _ = tx.update(g, tx.init(g))
  for k, name in STEEPEST_NORMS.items():
    # -γ/λ · ‖g‖† · dualize(g), with dualize = -lmo.
    want = 0.3 / sharpness * np_dual_norm(name, g[k]) * np_lmo(name, g[k])
    np.testing.assert_allclose(u[k], want, rtol=2e-5, atol=1e-6)


def test_steepest_descent_modular_matches_numpy():
  g = small_tree()
  norms = {k: NORM_OBJECTS[v] for k, v in STEEPEST_NORMS.items()}
  masses = {"w": 0.5, "h": 2.0, "b": 1.0}
  tx = normax.steepest_descent(0.1, norms, 2.0, modular=True, masses=masses)
  u, _ = tx.update(g, tx.init(g))
  total = sum(masses[k] * np_dual_norm(name, g[k]) for k, name in STEEPEST_NORMS.items())
  for k, name in STEEPEST_NORMS.items():
    want = 0.1 / 2.0 * total * masses[k] * np_lmo(name, g[k])
    np.testing.assert_allclose(u[k], want, rtol=2e-5, atol=1e-6)


def test_steepest_descent_under_its_norm_minimizes_the_model():
  # Δ minimizes ⟨g, Δ⟩ + (λ/2γ)‖Δ‖²: no random perturbation of it does better.
  g = small_tree()["w"]
  norm, lam, lr = normax.Spectral(method="svd"), 2.0, 0.5
  tx = normax.steepest_descent(lr, norm, lam)
  delta, _ = tx.update(g, tx.init(g))

  def model(d):
    return float(jnp.sum(g * d) + lam / (2 * lr) * norm.norm(d) ** 2)

  best = model(delta)
  rng = np.random.default_rng(0)
  for _ in range(20):
    other = delta + 0.05 * jnp.asarray(rng.standard_normal(g.shape), jnp.float32)
    assert model(other) >= best - 1e-5


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_sign_descent_and_normalized_sgd_match_numpy(beta):
  params = small_tree()
  for tx, lmo_name in [
    (normax.sign_descent(0.1, beta=beta), "sign_unnormalized"),
    (normax.normalized_sgd(0.1, beta=beta), None),
  ]:
    state = tx.init(params)
    d = {k: np.zeros(v.shape) for k, v in params.items()}
    for t in range(3):
      g = random_grads(params, 20 + t)
      u, state = tx.update(g, state, params)
      for k in params:
        d[k] = beta * d[k] + (1 - beta) * np.asarray(g[k], np.float64)
        if lmo_name:
          want = 0.1 * np_lmo(lmo_name, d[k])
        else:  # Frobenius per matrix / vector.
          want = -0.1 * d[k] / np.linalg.norm(d[k])
        np.testing.assert_allclose(u[k], want, rtol=1e-5, atol=1e-6)


def test_sign_descent_normalized_divides_by_fan_in():
  g = {"w": jnp.array([[1.0, -1.0], [2.0, 0.0], [-3.0, 1.0]])}
  tx = normax.sign_descent(1.0, normalized=True)
  u, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(u["w"], -np.sign(np.asarray(g["w"])) / 3)
