"""Bad or extreme input fails loudly: scale-free LMOs, checked values, unambiguous labels.

Each test here is a case that used to fail silently (a zero or a tiny update, a wrong
label, a misleading error) and now gives the right answer or an error that says what to do.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

# name -> (norm, shape of one leaf)
SCALE_CASES = {
  "spectral_ns": (normax.Spectral(), (6, 4)),
  "spectral_gram": (normax.Spectral(method="gram_newton_schulz"), (4, 12)),
  "spectral_svd": (normax.Spectral(method="svd"), (6, 4)),
  "spectral_aol": (normax.Spectral(preconditioning="aol"), (6, 4)),
  "spectral_schatten": (normax.Spectral(preconditioning="schatten"), (6, 4)),
  "spectral_spectral": (normax.Spectral(preconditioning="spectral"), (6, 4)),
  "gram_aol": (normax.Spectral(preconditioning="aol"), (4, 12)),
  "gram_schatten": (normax.Spectral(preconditioning="schatten"), (4, 12)),
  "spectral_conv": (normax.SpectralConv(), (3, 3, 4, 5)),
  "colnorm": (normax.ColNorm(), (6, 4)),
  "rownorm": (normax.RowNorm(), (6, 4)),
  "bias_rms": (normax.BiasRMS(), (7,)),
  "frobenius": (normax.Frobenius(), (6, 4)),
  "sign": (normax.Sign(), (6, 4)),
  "l1_to_l2": (normax.L1ToLp(2.0), (6, 4)),
  "l1_to_l3": (normax.L1ToLp(3.0), (6, 4)),
  "l3_to_linf": (normax.LpToLinf(3.0), (6, 4)),
}
DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


def _powers_of_ten(dtype):
  """Every k with 10^k·[0.5, 2] inside the dtype's normal range."""
  fi = jnp.finfo(dtype)
  lo = math.ceil(math.log10(float(fi.tiny) / 0.5))
  hi = math.floor(math.log10(float(fi.max) / 4))
  return np.arange(lo, hi + 1)


def _gradient(shape, seed=0):
  """Entries of size 0.5 to 2 with random signs: scaled by 10^k they stay normal numbers."""
  rng = np.random.default_rng(seed)
  return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(SCALE_CASES))
def test_dualize_does_not_depend_on_the_gradients_scale(name, dtype):
  norm, shape = SCALE_CASES[name]
  g = _gradient(shape)
  ks = _powers_of_ten(dtype)
  # Scaled in float64 and rounded once to the dtype: one leaf per power of ten.
  stack = jnp.asarray(np.stack([g * 10.0**k for k in ks]), dtype)
  got = np.asarray(jax.jit(jax.vmap(norm.dualize))(stack), np.float64)
  want = np.asarray(norm.dualize(jnp.asarray(g, dtype)), np.float64)
  assert np.abs(want).max() > 0
  tol = (1e-4 if dtype == jnp.float32 else 3e-2) * np.abs(want).max()
  for k, d in zip(ks, got, strict=True):
    np.testing.assert_allclose(d, want, rtol=0, atol=tol, err_msg=f"{name} at 10^{k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(SCALE_CASES))
def test_zero_stays_zero_and_nan_or_inf_come_out_as_nan(name, dtype):
  norm, shape = SCALE_CASES[name]
  np.testing.assert_array_equal(np.asarray(norm.dualize(jnp.zeros(shape, dtype)), np.float32), 0)
  g = jnp.asarray(_gradient(shape), dtype)
  for bad in (np.nan, np.inf, -np.inf):
    d = np.asarray(norm.dualize(g.at[(0,) * len(shape)].set(bad)), np.float32)
    assert np.isnan(d).any() and not np.isinf(d).any(), (name, bad, d)


@pytest.mark.parametrize("preconditioning", normax.PRECONDITIONINGS)
def test_a_layer_whose_gradient_dies_stays_finite_under_constrained_scion(preconditioning):
  # One gradient, then zeros (a dead layer, an idle expert): the momentum decays through
  # every scale down to 0. With AOL or Schatten preconditioning that reached 0/0 = NaN
  # once max|d| < ~1e-19 (step ~400 at beta = 0.9).
  norm = normax.Spectral(preconditioning=preconditioning)
  tx = normax.scion(0.1, {"h": normax.LayerSpec(norm, 1.0)}, {"w": "h"})
  params = {"w": norm.init(jax.random.key(0), (8, 16))}

  def step(carry, t):
    p, state = carry
    g = {"w": jnp.where(t == 0, 1.0, 0.0) * jnp.ones((8, 16))}
    u, state = tx.update(g, state, p)
    return (optax.apply_updates(p, u), state), jnp.all(jnp.isfinite(u["w"]))

  (final, _), finite = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(1200))
  assert bool(finite.all()) and bool(jnp.isfinite(final["w"]).all())


@pytest.mark.parametrize(
  "norm,shape",
  [
    (normax.Spectral(), (6, 4)),
    (normax.SpectralConv(), (3, 3, 4, 5)),
    (normax.ColNorm(), (6, 4)),
    (normax.RowNorm(), (6, 4)),
    (normax.BiasRMS(), (7,)),
    (normax.Frobenius(), (6, 4)),
    (normax.L1ToLp(3.0), (6, 4)),
  ],
)
def test_dual_norm_and_norm_scale_linearly_instead_of_overflowing(norm, shape):
  g = _gradient(shape)
  for c in (1e-30, 1e20, 1e36):
    x = jnp.asarray(g * c, jnp.float32)
    for fn in (norm.dual_norm, norm.norm):
      want = float(fn(jnp.asarray(g, jnp.float32)))
      np.testing.assert_allclose(float(fn(x)) / c, want, rtol=1e-4)


@pytest.mark.parametrize("dtype", (jnp.float32, jnp.bfloat16), ids=lambda d: jnp.dtype(d).name)
def test_muon_step_on_a_matrix_does_not_depend_on_the_gradients_scale(dtype):
  params = {"w": jnp.zeros((6, 4), dtype)}
  g = _gradient((6, 4))

  def step(tx, scale):
    grads = {"w": jnp.asarray(g * scale, dtype)}
    return tx.update(grads, tx.init(params), params)[0]["w"]

  # eps = 0: scale-free at every scale. The default eps = 1e-8 (optax.contrib.muon's guard,
  # kept for parity) only damps gradients whose Frobenius norm is near or below it.
  for tx, scales in [(normax.muon(0.1, eps=0.0), (-30, -20, -10, 10, 20, 30)),
                     (normax.muon(0.1), (-4, 10, 20, 30))]:  # fmt: skip
    want = np.asarray(step(tx, 1.0), np.float64)
    tol = (1e-4 if dtype == jnp.float32 else 3e-2) * np.abs(want).max()
    for k in scales:
      got = np.asarray(step(tx, 10.0**k), np.float64)
      np.testing.assert_allclose(got, want, atol=tol, err_msg=str(k))


# -- zero-size leaves -----------------------------------------------------------

ZERO_SIZE = {"a": jnp.zeros((0, 4)), "b": jnp.zeros((2, 0, 4)), "c": jnp.zeros((4, 0))}


@pytest.mark.parametrize("name", sorted(SCALE_CASES))
def test_a_zero_size_leaf_dualizes_to_an_empty_update(name):
  norm, shape = SCALE_CASES[name]
  empty = jnp.zeros((*shape[:-2], 0, shape[-1]) if len(shape) >= 2 else (0,))
  for x in (empty, jnp.zeros((2, *empty.shape))):
    d = norm.dualize(x)
    assert d.shape == x.shape and d.dtype == x.dtype
    batch = x.shape[: x.ndim - norm.core_ndim(x.ndim)]
    np.testing.assert_array_equal(norm.dual_norm(x), np.zeros(batch))
    np.testing.assert_array_equal(norm.norm(x), np.zeros(batch))


def _named_optimizers():
  specs = {"m": normax.LayerSpec("spectral", radius=2.0)}
  return {
    "scion": normax.scion(0.1, specs, lambda p: jax.tree.map(lambda _: "m", p)),
    "muon": normax.muon(0.1),
    "sign_descent": normax.sign_descent(0.1, beta=0.9, normalized=True),
    "normalized_sgd": normax.normalized_sgd(0.1),
    "steepest_descent": normax.steepest_descent(0.1, "rownorm"),
    "lmo_batched": normax.scale_by_lmo("spectral"),
    "project": normax.project_to_norm_ball("spectral", 1.0),
  }


@pytest.mark.parametrize("name", sorted(_named_optimizers()))
def test_zero_size_leaves_get_an_empty_update_from_every_optimizer(name):
  tx = _named_optimizers()[name]
  params = {**ZERO_SIZE, "w": jnp.ones((4, 4)), "w2": jnp.ones((4, 4))}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  for key, x in params.items():
    assert updates[key].shape == x.shape
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
  np.testing.assert_array_equal(normax.project(ZERO_SIZE, "sign")["b"], ZERO_SIZE["b"])


# -- values checked ---------------------------------------------------------------

BAD_NUMBERS = (-1.0, float("nan"), float("inf"), -float("inf"))


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_a_bad_radius_decay_or_learning_rate_is_refused_where_it_is_written(bad):
  labels = {"w": "hidden"}
  ok = normax.LayerSpec("spectral", radius=1.0)
  for field in ("radius", "decay"):  # The LayerSpec itself refuses it, before any optimizer.
    with pytest.raises(ValueError, match=rf"LayerSpec {field} must be a finite number >= 0"):
      normax.LayerSpec("sign", **{field: bad})
  with pytest.raises(ValueError, match="scion learning_rate must be a finite number >= 0"):
    normax.scion(bad, {"hidden": ok}, labels)


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_every_transform_rejects_a_bad_number_naming_the_argument(bad):
  cases = {
    "muon learning_rate": lambda: normax.muon(bad),
    "muon adam_learning_rate": lambda: normax.muon(0.1, adam_learning_rate=bad),
    "muon weight_decay": lambda: normax.muon(0.1, weight_decay=bad),
    "sign_descent learning_rate": lambda: normax.sign_descent(bad),
    "normalized_sgd learning_rate": lambda: normax.normalized_sgd(bad),
    "steepest_descent learning_rate": lambda: normax.steepest_descent(bad, "spectral"),
    "scale_by_radius radius at 'b'": lambda: normax.scale_by_radius({"a": 1.0, "b": bad}),
    "add_constrained_decay decay": lambda: normax.add_constrained_decay(bad),
    "project_to_norm_ball radius": lambda: normax.project_to_norm_ball("sign", bad),
    "project radius": lambda: normax.project(jnp.ones((2, 2)), "sign", bad),
  }
  for what, make in cases.items():
    with pytest.raises(ValueError, match=f"{what} must be a finite number >= 0"):
      make()


def test_schedules_zero_and_traced_values_are_accepted():
  normax.scion(lambda t: 0.1, {"h": normax.LayerSpec("sign", radius=lambda t: 1.0, decay=0)}, "h")
  tx = optax.inject_hyperparams(normax.sign_descent)(learning_rate=0.5)
  params = {"w": jnp.ones((2, 2))}
  updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.5)


# -- labels that cannot silently mis-route ------------------------------------------


def test_scion_cnn_refuses_to_guess_the_matrix_of_a_rank3_kernel():
  params = {"stack": {"kernel": jnp.zeros((3, 16, 16))}, "head": {"kernel": jnp.zeros((16, 4))}}
  for spatial_dims in (None, 2):  # A dense stack or a 1-D conv: names cannot tell.
    labels, specs = normax.presets.scion_cnn(spatial_dims=spatial_dims)
    with pytest.raises(ValueError, match=r"(?s)stack/kernel  \(3, 16, 16\).*infer_roles"):
      labels(params)
  stated = normax.Rule("stack/*", "hidden", view=normax.MatrixView(-2, -1))
  labels, specs = normax.presets.scion_cnn(rules=[stated])
  assert labels(params)["stack"]["kernel"] == "hidden"
  spec = normax.resolve_specs(params, labels, specs)["stack"]["kernel"]
  assert spec.norm == normax.Spectral() and spec.view == normax.MatrixView(-2, -1)


def test_spectral_refuses_a_kernel_of_a_conv_module():
  grads = {"Conv_0": {"kernel": jnp.ones((3, 3, 4, 8))}}
  with pytest.raises(ValueError, match=r"'Conv_0/kernel'.*normax\.SpectralConv\(\)"):
    normax.scale_by_lmo("spectral").update(grads, optax.EmptyState())
  # SpectralConv takes it; a dense stack elsewhere and a direct call (no path) stay batches.
  normax.scale_by_lmo("spectral_conv").update(grads, optax.EmptyState())
  normax.scale_by_lmo("spectral").update({"blocks": {"mlp": jnp.ones((3, 4, 8))}}, None)
  normax.Spectral().dualize(jnp.ones((3, 4, 8)))


def test_a_rule_is_a_label_or_an_error():
  with pytest.raises(TypeError, match="exactly one of a label or an error"):
    normax.Rule("*", "hidden", error="ambiguous")
  with pytest.raises(TypeError, match="exactly one of a label or an error"):
    normax.Rule("*", None)


# -- optax.inject_hyperparams ---------------------------------------------------------


def _gpt_params():
  return {
    "embed": {"embedding": jnp.ones((11, 8))},
    "mlp": {"kernel": jnp.ones((8, 8)), "bias": jnp.ones(8)},
    "lm_head": {"kernel": jnp.ones((8, 11))},
  }


def test_inject_hyperparams_takes_a_preset_label_function_without_static_args():
  labels, specs = normax.presets.scion_gpt()
  params = _gpt_params()
  grads = jax.tree.map(lambda x: 0.1 * x, params)
  plain = normax.scion(0.01, specs, labels)
  tx = optax.inject_hyperparams(normax.scion)(learning_rate=0.01, specs=specs, labels=labels)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(2):  # The second step reuses the state the first one returned.
    updates, state = step(grads, state, params)
  want, plain_state = plain.update(grads, plain.init(params), params)
  want, _ = plain.update(grads, plain_state, params)
  for got, ref in zip(jax.tree.leaves(updates), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
  state.hyperparams["learning_rate"] = jnp.asarray(0.0)  # Schedulable as usual.
  updates, _ = step(grads, state, params)
  assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates))


def test_inject_hyperparams_inside_nnx_optimizer():
  nnx = pytest.importorskip("flax.nnx")

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.mlp = nnx.Linear(4, 4, rngs=rngs)
      self.lm_head = nnx.Linear(4, 3, rngs=rngs)

  labels, specs = normax.presets.scion_gpt()
  muon_labels = normax.label_by_path([("mlp/kernel", "muon")], default="adam")
  txs = {
    "scion": optax.inject_hyperparams(normax.scion)(learning_rate=0.1, specs=specs, labels=labels),
    # ns_steps may be injected too (traced): no static_args needed.
    "muon": optax.inject_hyperparams(normax.muon)(learning_rate=0.1, labels=muon_labels),
    "muon_static": optax.inject_hyperparams(normax.muon, static_args=("ns_steps",))(
      learning_rate=0.1, labels=muon_labels
    ),
  }
  for tx in txs.values():
    model = Model(nnx.Rngs(0))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = model.mlp.kernel.get_value()
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    nnx.jit(lambda m, o, g: o.update(m, g))(model, opt, grads)
    assert not np.allclose(model.mlp.kernel.get_value(), before)


# -- structure errors name paths, never values -------------------------------------


def test_label_and_hyperparameter_structure_errors_name_missing_and_extra_paths():
  params = {"a": {"w": jnp.full((2, 2), 1234.5)}, "b": jnp.full(3, 1234.5)}
  with pytest.raises(ValueError) as labels_info:
    normax.resolve_specs(params, {"a": {"w": "h", "x": "h"}}, {"h": "spectral"})
  labels_message = str(labels_info.value)
  assert "no entry for parameter path(s) ['b']" in labels_message
  assert "entries at ['a/x'] that match no parameter" in labels_message
  tx = normax.scale_by_radius({"a": {"w": 1.0, "x": 2.0}, "c": 1.0})
  with pytest.raises(ValueError) as radius_info:
    tx.update(params, tx.init(params))
  radius_message = str(radius_info.value)
  assert "The radius tree does not match" in radius_message and "['a/x', 'c']" in radius_message
  for message in (labels_message, radius_message):
    assert "1234" not in message and "Array" not in message and "metadata" not in message


# -- the top and bottom of the float range -------------------------------------------

EDGE_NORMS = {
  "spectral": normax.Spectral(),
  "colnorm": normax.ColNorm(),
  "rownorm": normax.RowNorm(),
  "bias_rms": normax.BiasRMS(),
  "frobenius": normax.Frobenius(),
  "sign": normax.Sign(),
  "sign_unnormalized": normax.Sign(normalized=False),
  "l1_to_l2": normax.L1ToLp(2.0),
  "l1_to_l3": normax.L1ToLp(3.0),
  "l3_to_linf": normax.LpToLinf(3.0),
}


@pytest.mark.parametrize("dtype", (jnp.float32, jnp.bfloat16), ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(EDGE_NORMS))
def test_norms_near_the_largest_float_are_exact_or_inf_never_zero(name, dtype):
  # Entries near 2e38: dividing by the largest entry used to round its reciprocal (a
  # subnormal) to 0, so dualize gave 0 and the norms 0. A dual norm whose sum overflows
  # before its 1/d_in (Sign, RowNorm) came out inf although the result is representable.
  norm = EDGE_NORMS[name]
  g = _gradient((16, 2), seed=3)
  big = 2e38 / np.abs(g).max()
  x = jnp.asarray(g * big, dtype)
  g64 = np.asarray(x, np.float64) / big
  d = np.asarray(norm.dualize(x), np.float64)
  np.testing.assert_allclose(d, np.asarray(norm.dualize(jnp.asarray(g64, jnp.float32))), atol=2e-2)
  for fn in (norm.dual_norm, norm.norm):
    want = float(jnp.max(fn(jnp.asarray(g64, jnp.float32)))) * big
    got = float(jnp.max(fn(x)))
    if want < 0.5 * float(jnp.finfo(jnp.float32).max):
      np.testing.assert_allclose(got, want, rtol=2e-2, err_msg=fn.__name__)
    else:
      assert got == np.inf or np.isclose(got, want, rtol=2e-2), (fn.__name__, got, want)


@pytest.mark.parametrize("sphere", [False, True], ids=["ball", "sphere"])
@pytest.mark.parametrize("name", ["colnorm", "rownorm", "bias_rms", "frobenius", "l1_to_l2"])
def test_projection_is_exact_at_every_scale(name, sphere):
  # ‖w‖ from an unscaled sum of squares overflowed at 1e20 (the projection gave 0) and
  # underflowed at 1e-20 (the weight was taken for zero and kept).
  norm = EDGE_NORMS[name]
  g = _gradient((6, 4), seed=4)
  want = np.asarray(norm.project(jnp.asarray(g, jnp.float32), 1.0, sphere), np.float64)
  for c in (1e-30, 1e-20, 1e20, 1e30):
    got = np.asarray(norm.project(jnp.asarray(g * c, jnp.float32), c, sphere), np.float64) / c
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(c))


@pytest.mark.parametrize("scale", [1e-20, 1e20])
@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
def test_hyperball_keeps_tiny_and_huge_weights_on_their_sphere(scale, norm):
  w = {"w": jnp.asarray(_gradient((6, 4), seed=5) * scale, jnp.float32)}
  tx = normax.hyperball(0.1, norm=norm)
  size = normax.get_norm(norm).norm
  u, _ = tx.update(jax.tree.map(jnp.ones_like, w), tx.init(w), w)
  new = optax.apply_updates(w, u)["w"]
  np.testing.assert_allclose(float(size(new)) / float(size(w["w"])), 1.0, rtol=1e-5)
  assert float(jnp.abs(new - w["w"]).max()) > 0.01 * scale  # It did move.


def test_muon_on_float16_gradients_near_the_top_of_their_range():
  # Nesterov's bias-corrected output (about 1.5 g at step 1) rounded to float16 before
  # Newton–Schulz overflowed to inf for gradients near 4e4 (float16's largest value: 65504).
  params = {"w": jnp.zeros((8, 16), jnp.float16), "b": jnp.zeros((16,), jnp.float16)}
  g = _gradient((8, 16), seed=6)
  tx = normax.muon(0.01, eps=0.0)

  def step(scale):
    grads = {"w": jnp.asarray(g * scale, jnp.float16), "b": jnp.ones((16,), jnp.float16)}
    u, _ = tx.update(grads, tx.init(params), params)
    assert u["w"].dtype == jnp.float16
    return np.asarray(u["w"], np.float64)

  want = step(1.0)
  got = step(3e4)  # Entries up to 6e4.
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, want, atol=3e-2 * np.abs(want).max())


# -- errors that name the parameter -------------------------------------------------


def _named_optimizers_with_params():
  specs = {"h": normax.LayerSpec("spectral"), "bias": normax.LayerSpec("bias_rms")}
  return {
    "scion": normax.scion(0.1, specs, {"a": {"w": "h"}, "b": "bias"}),
    "muon": normax.muon(0.1),
    "sign_descent": normax.sign_descent(0.1, beta=0.9),
    "normalized_sgd": normax.normalized_sgd(0.1),
    "steepest_descent": normax.steepest_descent(0.1, "frobenius"),
    "momentum": normax.momentum(0.9),
  }


@pytest.mark.parametrize("name", sorted(_named_optimizers_with_params()))
def test_gradients_that_do_not_fit_the_parameters_are_named_by_path(name):
  tx = _named_optimizers_with_params()[name]
  params = {"a": {"w": jnp.full((4, 4), 1234.5)}, "b": jnp.full(4, 1234.5)}
  state = tx.init(params)
  # A shape mismatch was "add got incompatible shapes for broadcasting: (4, 4), (4, 5)".
  wrong = {"a": {"w": jnp.full((4, 5), 1234.5)}, "b": jnp.full(4, 1234.5)}
  with pytest.raises(ValueError, match=r"a/w \(4, 5\) \(parameter \(4, 4\)\)"):
    tx.update(wrong, state, params)
  # A list for a dict printed the parameters' values (scion) or a bare pytree error (muon).
  with pytest.raises(ValueError) as info:
    tx.update([jnp.full((4, 4), 1234.5), jnp.full(4, 1234.5)], state, params)
  assert "['a/w', 'b']" in str(info.value) and "['0', '1']" in str(info.value)
  assert "1234" not in str(info.value) and "Array" not in str(info.value)


@pytest.mark.parametrize("name", ["scion", "muon", "sign_descent"])
def test_float0_gradients_of_integer_leaves_are_named(name):
  params = {"a": {"w": jnp.ones((4, 4))}, "b": jnp.ones(4), "step": jnp.zeros((), jnp.int32)}
  grads = jax.grad(lambda p: jnp.sum(p["a"]["w"]) + jnp.sum(p["b"]), allow_int=True)(params)
  specs = {"h": normax.LayerSpec("spectral"), "bias": normax.LayerSpec("bias_rms")}
  tx = {
    "scion": normax.scion(0.1, specs, {"a": {"w": "h"}, "b": "bias", "step": "bias"}),
    "muon": normax.muon(0.1),  # The int leaf went to AdamW: "ufunc 'power' not supported".
    "sign_descent": normax.sign_descent(0.1),
  }[name]
  with pytest.raises(TypeError, match=r"float0 gradients at \['step'\].*optax.set_to_zero"):
    tx.update(grads, tx.init(params), params)


def test_zero_size_dimensions_initialize_to_empty_arrays():
  # Spectral's dimension factor divided by the zero-length axis: ZeroDivisionError.
  key = jax.random.key(0)
  for norm, shape in [
    (normax.Spectral(), (0, 4)),
    (normax.Spectral(), (4, 0)),
    (normax.SpectralConv(), (3, 3, 0, 4)),
    (normax.ColNorm(), (0, 4)),
    (normax.Sign(), (4, 0)),
  ]:
    w = norm.init(key, shape)
    assert w.shape == shape and w.dtype == jnp.float32
  params = {"w": jnp.ones((0, 4)), "v": jnp.ones((4, 4))}
  specs = {"h": normax.LayerSpec("spectral", radius=2.0)}
  out = normax.init_params(key, params, {"w": "h", "v": "h"}, specs)
  assert out["w"].shape == (0, 4)
  np.testing.assert_allclose(float(normax.Spectral().norm(out["v"])), 2.0, rtol=1e-5)


def test_hyperball_refuses_a_weight_of_norm_zero():
  # Its sphere had radius 0: the weight stayed 0 forever, silently.
  params = {"w": jnp.zeros((4, 4)), "v": jnp.ones((4, 4))}
  with pytest.raises(ValueError, match=r"'w' \(shape \(4, 4\)\) has norm 0.*radius="):
    normax.hyperball(0.1).init(params)
  tx = normax.hyperball(0.1, radius=2.0)  # A given radius: the weight leaves 0.
  u, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(float(jnp.linalg.norm(params["w"] + u["w"])), 2.0, rtol=1e-5)
