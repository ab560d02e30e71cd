"""Boundary initialization (init_params, init_model) and the model-family presets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import normax


def gpt_params():
  return {
    "tok_embed": {"embedding": jnp.zeros((50, 16))},
    "pos_embed": {"embedding": jnp.zeros((8, 16))},
    "blocks": {
      "fc": {"kernel": jnp.zeros((3, 16, 64))},  # A scanned stack of 3 layers.
      "norm": {"scale": jnp.ones((3, 16))},
    },
    "lm_head": {"kernel": jnp.zeros((16, 50))},
  }


# The scanned stack's view, stated (labelling by name cannot tell a stack from other layouts).
STACKED = [normax.Rule("blocks/*", "hidden", min_ndim=3, view=normax.MatrixView(-2, -1))]


def test_init_params_puts_every_layer_on_its_sphere_times_its_radius():
  labels, specs = normax.presets.scion_gpt(rules=STACKED)
  params = gpt_params()
  new = normax.init_params(jax.random.key(0), params, labels, specs, keep=("bias",))
  # Independent checks with numpy: singular values, row norms, entry magnitudes.
  fc = np.asarray(new["blocks"]["fc"]["kernel"], np.float64)
  for layer in fc:  # Each stacked matrix: all singular values = ρ·√(d_out/d_in) = 10·2.
    np.testing.assert_allclose(np.linalg.svd(layer, compute_uv=False), 10.0 * 2.0, rtol=1e-5)
  for name in ("tok_embed", "pos_embed"):  # ColNorm ρ = 3: every token vector has RMS 3.
    rows = np.asarray(new[name]["embedding"], np.float64)
    np.testing.assert_allclose(np.sqrt(np.mean(rows**2, axis=-1)), 3.0, rtol=1e-5)
  head = np.asarray(new["lm_head"]["kernel"])  # Sign ρ = 30: entries ±30/d_in.
  np.testing.assert_allclose(np.abs(head), 30.0 / 16, rtol=1e-6)
  assert 0.3 < np.mean(head > 0) < 0.7
  np.testing.assert_array_equal(new["blocks"]["norm"]["scale"], 1.0)  # Kept.
  # Different layers of the stack and different leaves get different draws.
  assert not np.allclose(fc[0], fc[1])
  again = normax.init_params(jax.random.key(0), params, labels, specs, keep=("bias",))
  np.testing.assert_array_equal(again["lm_head"]["kernel"], head)  # Deterministic.
  other = normax.init_params(jax.random.key(1), params, labels, specs, keep=("bias",))
  assert not np.array_equal(other["lm_head"]["kernel"], head)


def test_init_params_keys_do_not_depend_on_the_other_leaves():
  labels, specs = normax.presets.scion_gpt(rules=STACKED)
  params = gpt_params()
  full = normax.init_params(jax.random.key(0), params, labels, specs, keep=("bias",))
  del params["pos_embed"]
  fewer = normax.init_params(jax.random.key(0), params, labels, specs, keep=("bias",))
  np.testing.assert_array_equal(full["lm_head"]["kernel"], fewer["lm_head"]["kernel"])


def test_init_params_dtypes_schedules_and_errors():
  params = {"w": jnp.zeros((4, 8), jnp.bfloat16), "b": jnp.zeros(8)}
  specs = {
    "hidden": normax.LayerSpec("spectral", radius=optax.linear_schedule(2.0, 0.0, 10)),
    "bias": normax.LayerSpec("bias_rms", radius=0.5),
  }
  new = normax.init_params(jax.random.key(0), params, {"w": "hidden", "b": "bias"}, specs)
  assert new["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(normax.Spectral().norm(new["w"]), 2.0, rtol=2e-2)  # ρ at step 0.
  np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(new["b"]) ** 2)), 0.5, rtol=1e-5)
  with pytest.raises(ValueError, match="keep names label"):
    normax.init_params(jax.random.key(0), params, {"w": "hidden", "b": "bias"}, specs, keep="x")
  with pytest.raises(ValueError, match="'w'"):  # A 1-D leaf cannot take Spectral: path named.
    normax.init_params(jax.random.key(0), {"w": jnp.zeros(3)}, {"w": "hidden"}, specs)


def test_init_model_on_nnx():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.input = nnx.Linear(64, 32, rngs=rngs)
      self.head = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
      return self.head(jax.nn.relu(self.input(x)))

  model = Net(nnx.Rngs(0))
  labels, specs = normax.presets.scion_mlp()
  normax.init_model(jax.random.key(0), model, labels, specs, keep=("bias",))
  s = np.linalg.svd(np.asarray(model.input.kernel[...], np.float64), compute_uv=False)
  np.testing.assert_allclose(s, 4.0 * max(1.0, np.sqrt(32 / 64)), rtol=1e-5)  # Spectral(max), ρ 4.
  np.testing.assert_allclose(np.abs(np.asarray(model.head.kernel[...])), 2.0**10 / 32, rtol=1e-6)
  np.testing.assert_array_equal(model.head.bias[...], 0.0)
  # The model still trains with the optimizer the preset describes.
  optimizer = nnx.Optimizer(model, normax.scion(2**-6, specs, labels), wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(1), (32, 64))
  y = jnp.arange(32) % 10

  def loss(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  @nnx.jit  # One compiled step (eagerly, every step re-traces the update op by op).
  def step(model, optimizer):
    optimizer.update(model, nnx.grad(loss)(model))

  first = float(loss(model))
  for _ in range(20):
    step(model, optimizer)
  assert float(loss(model)) < 0.5 * first


def test_preset_families_and_their_radii():
  labels, specs = normax.presets.scion_gpt()
  assert {k: v.radius for k, v in specs.items()} == {
    "embed": 3.0, "hidden": 10.0, "head": 30.0, "bias": 1.0
  }  # fmt: skip
  labels, specs = normax.presets.scion_gpt_tied(rules=STACKED)
  params = gpt_params()
  del params["lm_head"]
  out = labels(params)
  assert out["tok_embed"]["embedding"] == "head" and out["pos_embed"]["embedding"] == "embed"
  assert specs["head"].norm == normax.Sign(transpose=True) and specs["head"].radius == 10.0
  # The tied table's direction is the head's: sign / features.
  g = jax.random.normal(jax.random.key(0), (50, 16))
  np.testing.assert_allclose(specs["head"].norm.dualize(g), np.sign(g) / 16)
  with pytest.raises(ValueError, match="head"):  # No token table: an error, not a silent head.
    labels({"emb": {"embedding": jnp.zeros((5, 4))}, "w": {"kernel": jnp.zeros((4, 4))}})
  labels, specs = normax.presets.scion_mlp()
  assert specs["input"].norm == normax.Spectral(max=True) and specs["head"].radius == 2.0**10
  with pytest.raises(ValueError, match="input"):  # The pixel-input layer must be found.
    labels({"dense": {"kernel": jnp.zeros((8, 4))}, "head": {"kernel": jnp.zeros((4, 2))}})
  labels, specs = normax.presets.scion_cnn()
  assert specs["conv"].radius == 8.0 and specs["head"].radius == 128.0
