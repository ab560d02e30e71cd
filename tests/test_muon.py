"""normax.muon: parity with optax.contrib.muon, its labels and matrix views, and the variants."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers as MDN

import normax


def rand_tree(shapes, seed):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


PLAIN = {"w_wide": (4, 6), "w_tall": (6, 3), "b": (6,), "scale": ()}
# Stacked kernel, 4-D conv leaf, stacked bias (Adam), plain matrix.
MIXED = {"stack": (3, 6, 8), "conv": (3, 3, 4, 8), "bias": (3, 8), "w": (8, 4)}
MIXED_DIMS = {"stack": MDN(1, 2), "conv": MDN((0, 1, 2), 3), "bias": None, "w": MDN()}


def rand_like(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)


def assert_same_updates(ref, ours, params, steps=2, rtol=2e-4, atol=2e-6):
  """Both transforms see the same gradients and their own parameters for ``steps`` steps."""
  s_ref, s_ours = ref.init(params), ours.init(params)
  up_ref, up_ours = jax.jit(ref.update), jax.jit(ours.update)
  p_ref = p_ours = params
  for t in range(steps):
    g = rand_like(params, 100 + t)
    u_ref, s_ref = up_ref(g, s_ref, p_ref)
    u_ours, s_ours = up_ours(g, s_ours, p_ours)
    paths = jax.tree.leaves(normax.tree_paths(u_ref))
    for path, a, b in zip(paths, jax.tree.leaves(u_ref), jax.tree.leaves(u_ours), strict=True):
      scale = float(jnp.max(jnp.abs(a))) or 1.0
      np.testing.assert_allclose(b, a, rtol=rtol, atol=atol * scale, err_msg=path)
    p_ref, p_ours = optax.apply_updates(p_ref, u_ref), optax.apply_updates(p_ours, u_ours)


# -- the drop-in --------------------------------------------------------------


def test_signature_is_optax_contrib_muon_plus_keyword_only_extras():
  ref = inspect.signature(optax.contrib.muon).parameters
  ours = inspect.signature(normax.muon).parameters
  for name, p in ref.items():
    assert name in ours, name
    assert ours[name].kind == p.kind, name
    assert ours[name].default == p.default, name
  assert list(ours)[: len(ref)] == list(ref)
  extras = [p for n, p in ours.items() if n not in ref]
  assert extras and all(p.kind == p.KEYWORD_ONLY for p in extras)


WD_MASK_TREE = {"w_wide": True, "w_tall": False, "b": False, "scale": False}
# Every option of optax.contrib.muon appears in at least one configuration.
COMBINED = [
  ("plain", {}, None),
  (
    "plain",
    {
      "adaptive": True,
      "nesterov": False,
      "beta": 0.9,
      "weight_decay": 0.1,
      "weight_decay_mask": lambda p: jax.tree.map(lambda x: x.ndim == 2, p),
    },
    None,
  ),
  (
    "plain",
    {
      "preconditioning": "aol",
      "ns_steps": 4,
      "consistent_rms": 0.2,
      "weight_decay": 0.1,
      "weight_decay_mask": WD_MASK_TREE,
    },
    None,
  ),
  (
    "plain",
    {"preconditioning": "schatten", "ns_coeffs": "dion", "adam_b2": 0.95, "adam_eps_root": 1e-8},
    None,
  ),
  (
    "plain",
    {
      "preconditioning": "spectral",
      "eps": 1e-2,
      "ns_coeffs": ((4.0, -4.0, 1.0), (3.0, -2.5, 0.5), (1.875, -1.25, 0.375)),
    },
    None,
  ),
  ("mixed", {"adam_b1": 0.8, "adam_weight_decay": 0.01, "adam_learning_rate": 3e-3}, "tree"),
  # (adaptive only on unstacked leaves: optax takes one inner product over a whole stack.)
  ("mixed", {"preconditioning": "aol", "consistent_rms": 0.2}, "callable"),
]


@pytest.mark.parametrize(("tree", "kwargs", "dims"), COMBINED)
def test_parity_with_optax_contrib_muon(tree, kwargs, dims):
  params = rand_tree(PLAIN if tree == "plain" else MIXED, 0)
  if dims == "tree":
    kwargs = dict(kwargs, muon_weight_dimension_numbers=MIXED_DIMS)
  elif dims == "callable":
    kwargs = dict(kwargs, muon_weight_dimension_numbers=lambda p: MIXED_DIMS)
  assert_same_updates(optax.contrib.muon(0.02, **kwargs), normax.muon(0.02, **kwargs), params)


def test_parity_bf16_momentum_within_bf16_rounding():
  # optax multiplies the stored bf16 momentum by β in bf16; normax upcasts first.
  params = rand_tree({"w": (6, 10), "b": (10,)}, 2)
  ref = optax.contrib.muon(0.02, mu_dtype=jnp.bfloat16)
  ours = normax.muon(0.02, mu_dtype=jnp.bfloat16)
  assert_same_updates(ref, ours, params, rtol=2e-2, atol=2e-2)
  state = ours.init(params)
  assert jax.tree.leaves(state)[1].dtype == jnp.bfloat16


def test_inject_hyperparams_matches_optax_and_honours_ns_steps():
  params = rand_tree(PLAIN, 3)
  ref = optax.inject_hyperparams(optax.contrib.muon)(learning_rate=0.02)
  ours = optax.inject_hyperparams(normax.muon)(learning_rate=0.02)
  assert_same_updates(ref, ours, params, steps=2)
  # Changing the injected ns_steps in the state changes the iteration, as in optax.
  grads = rand_tree({k: v.shape for k, v in params.items()}, 4)
  state = ours.init(params)
  state.hyperparams["ns_steps"] = jnp.asarray(2)
  u, _ = jax.jit(ours.update)(grads, state, params)
  tx = normax.muon(0.02, ns_steps=2)
  expected, _ = tx.update(grads, tx.init(params), params)
  for k in params:
    np.testing.assert_allclose(u[k], expected[k], rtol=1e-4, atol=1e-6)


def test_former_keyword_names_are_errors_naming_the_new_spelling():
  for old, new in [
    ("ns_coefficients", "ns_coeffs="),
    ("momentum_dtype", "mu_dtype="),
    ("ns_method", r"orthogonalizer=normax.Orthogonalizer\(method=...\)"),
    ("ns_dtype", r"orthogonalizer=normax.Orthogonalizer\(compute_dtype=...\)"),
  ]:
    with pytest.raises(TypeError, match=rf"normax.muon\(\) got {old}=, a former name: pass {new}"):
      normax.muon(0.02, **{old: None})


def test_the_orthogonalizer_meets_optax_newton_schulz_arguments():
  params = rand_tree(PLAIN, 5)
  orth = normax.Orthogonalizer
  # Unset fields take muon's arguments, unset arguments the fields; equal is not a conflict.
  cases = [
    (dict(ns_steps=3, orthogonalizer=orth(method="newton_schulz")), dict(ns_steps=3)),
    (dict(orthogonalizer=orth(method="newton_schulz", steps=3)), dict(ns_steps=3)),
    (dict(ns_steps=3, orthogonalizer=orth(method="newton_schulz", steps=3)), dict(ns_steps=3)),
    (
      dict(orthogonalizer=orth(method="newton_schulz", coefficients="dion")),
      dict(ns_coeffs="dion"),
    ),
    (
      dict(orthogonalizer=orth(method="newton_schulz", preconditioning="aol")),
      dict(preconditioning="aol"),
    ),
  ]
  for given, same in cases:
    assert_same_updates(optax.contrib.muon(0.02, **same), normax.muon(0.02, **given), params)
  # The orthogonalizer's eps is Newton–Schulz's alone; AdamW keeps muon's eps.
  ours = normax.muon(0.02, orthogonalizer=orth(method="newton_schulz", eps=1e-3))
  assert_same_updates(normax.muon(0.02, eps=1e-3, adam_eps=1e-8), ours, params)
  for arg, field in [
    ({"ns_steps": 4}, {"steps": 6}),
    ({"ns_coeffs": "dion"}, {"coefficients": "cubic"}),
    ({"preconditioning": "aol"}, {"preconditioning": "schatten"}),
    ({"eps": 1e-3}, {"eps": 1e-4}),
  ]:
    (name,) = arg
    with pytest.raises(ValueError, match=rf"normax.muon: {name}=.* and orthogonalizer\.\w+=.*"):
      normax.muon(0.02, **arg, orthogonalizer=orth(**field))
  with pytest.raises(TypeError, match="orthogonalizer must be a normax.Orthogonalizer"):
    normax.muon(0.02, orthogonalizer="svd")


def test_traced_hyperparameters_take_the_static_path_and_batch():
  # Under inject_hyperparams the traced ns_steps and eps reach the one Spectral path: the
  # update equals the static one, and same-shape matrices still share one batched call.
  params = {"a": jnp.ones((4, 8)), "b": jnp.ones((4, 8))}
  grads = rand_like(params, 7)
  tx = optax.inject_hyperparams(normax.muon)(learning_rate=0.02, eps=1e-3)
  u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  ref = normax.muon(0.02, eps=1e-3)
  expected, _ = ref.update(grads, ref.init(params), params)
  for k in params:
    np.testing.assert_allclose(u[k], expected[k], rtol=1e-5, atol=1e-7)
  jaxpr = str(jax.make_jaxpr(lambda g: tx.update(g, tx.init(params), params)[0])(grads))
  assert jaxpr.count("while[") == 1  # One fori_loop over the stacked pair, not one per leaf.


# -- labels and matrix views --------------------------------------------------


def test_default_routing_is_optax_routing_exactly():
  # Called like optax.contrib.muon, normax.muon routes as it does: 2-D leaves on Muon, all
  # else on AdamW, even where Muon practice differs (a stacked kernel, a 2-D stacked bias).
  params = {
    "layers": rand_tree({"kernel": (4, 6, 8), "bias": (4, 8), "norm_scale": (4, 8)}, 1),
    "embed": rand_tree({"w": (10, 6)}, 2)["w"],
    "conv": rand_tree({"w": (3, 3, 2, 4)}, 3)["w"],
    "attn": rand_tree({"query": (6, 2, 3)}, 4),
  }
  labels = normax.label_by_path(list(normax.DEFAULT_MUON_RULES), default="adam")(params)
  assert labels == {
    "layers": {"kernel": "adam", "bias": "muon", "norm_scale": "muon"},
    "embed": "muon",
    "conv": "adam",
    "attn": {"query": "adam"},
  }
  assert_same_updates(optax.contrib.muon(0.02), normax.muon(0.02), params, steps=2)


def test_labels_route_and_dimension_numbers_describe_the_view():
  params = rand_tree(MIXED, 7)
  labels = {"stack": "muon", "conv": "muon", "bias": "adam", "w": "adam"}
  dims = {"stack": MDN(1, 2), "conv": MDN((0, 1, 2), 3), "bias": None, "w": MDN()}
  ours = normax.muon(0.02, labels=labels, muon_weight_dimension_numbers=dims)
  ref_dims = dict(dims, w=None)  # optax routes by dimension numbers alone
  ref = optax.contrib.muon(0.02, muon_weight_dimension_numbers=ref_dims)
  assert_same_updates(ref, ours, params, steps=2)
  labels["bias"] = "muon"  # 'muon' leaf whose dimension numbers say Adam
  with pytest.raises(ValueError, match=r"\['bias'\] are labelled 'muon'.*None"):
    normax.muon(0.02, labels=labels, muon_weight_dimension_numbers=dims).init(params)


def test_output_blocks_orthogonalize_each_block():
  # A fused QKV kernel (d, 3d): each (d, d) block gets its own polar factor.
  g = rand_tree({"qkv": (8, 24)}, 8)
  params = jax.tree.map(jnp.zeros_like, g)
  tx = normax.muon(
    0.1, output_blocks={"qkv": 3}, orthogonalizer=normax.Orthogonalizer(method="svd")
  )
  u, _ = tx.update(g, tx.init(params), params)
  for i in range(3):
    blk = np.asarray(g["qkv"][:, 8 * i : 8 * (i + 1)], np.float64)
    left, _, right = np.linalg.svd(blk)
    np.testing.assert_allclose(u["qkv"][:, 8 * i : 8 * (i + 1)], -0.1 * left @ right, atol=1e-5)
  with pytest.raises(ValueError, match=r"output_blocks=5\) .* do not divide the fan-out size 24"):
    normax.muon(0.1, output_blocks=5).init(params)


def test_with_matrix_view_round_trips_and_blocks_heads():
  x = rand_tree({"k": (2, 5, 3, 4)}, 9)["k"]  # (batch, d_in, heads, head_dim)
  dims = normax.MuonDimensionNumbers(reduction_axis=1, output_axis=(2, 3))
  tx = normax.with_matrix_view(optax.identity(), dims, blocks=3)
  np.testing.assert_array_equal(tx.update(x, tx.init(x))[0], x)
  tx = normax.with_matrix_view(normax.scale_by_lmo(normax.Spectral(method="svd")), dims, blocks=3)
  u, _ = tx.update(x, tx.init(x))
  for b in range(2):
    for head in range(3):  # each head its own (5, 4) matrix: √(4/5)·polar
      left, _, right = np.linalg.svd(np.asarray(x[b, :, head, :], np.float64), full_matrices=False)
      np.testing.assert_allclose(u[b, :, head, :], np.sqrt(4 / 5) * left @ right, atol=1e-5)


# -- the variants -------------------------------------------------------------


def test_consistent_rms_update_rms_and_decoupled_decay():
  params = rand_tree({"a": (6, 16), "b": (16, 4)}, 10)
  g = rand_tree({"a": (6, 16), "b": (16, 4)}, 11)
  lr, wd = 0.1, 0.5
  tx = normax.muon(lr, consistent_rms=0.2, orthogonalizer=normax.Orthogonalizer(method="svd"))
  u, _ = tx.update(g, tx.init(params), params)
  for k in params:  # exact polar factor: RMS = 1/√max(fan), times 0.2·√max(fan)
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(u[k]))), lr * 0.2, rtol=1e-5)
  tx = normax.muon(lr, consistent_rms=0.2, weight_decay=wd)
  zero = jax.tree.map(jnp.zeros_like, g)
  u, _ = tx.update(zero, tx.init(params), params)  # zero gradient: only the decay
  for k in params:
    np.testing.assert_allclose(u[k], -lr * wd * params[k], rtol=1e-6)


def np_precondition(x, kind):
  x = np.asarray(x, np.float64)
  a = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
  if kind == "frobenius":
    return x / np.linalg.norm(x)
  if kind == "spectral":
    return x / np.linalg.norm(x, 2)
  if kind == "schatten":
    return x / np.sqrt(np.linalg.norm(a))
  d = 1 / np.sqrt(np.abs(a).sum(axis=1))
  return d[:, None] * x if x.shape[0] <= x.shape[1] else x * d[None, :]


@pytest.mark.parametrize("kind", normax.PRECONDITIONINGS)
@pytest.mark.parametrize("shape", [(5, 9), (9, 5)])
def test_preconditioning_matches_numpy_and_bounds_the_spectrum(kind, shape):
  x = rand_tree({"x": shape}, 12)["x"]
  out = normax.precondition(x, kind)
  np.testing.assert_allclose(out, np_precondition(x, kind), rtol=1e-5, atol=1e-6)
  assert np.linalg.norm(np.asarray(out, np.float64), 2) <= 1 + 1e-5
  assert not np.any(np.isnan(normax.precondition(jnp.zeros(shape), kind)))


def test_aol_lifts_the_smallest_singular_values():
  # Turbo-Muon's point: after AOL the spectrum starts closer to 1 than after Frobenius,
  # so 4 steps of the quintic reach at least what 5 reach from Frobenius.
  x = rand_tree({"x": (64, 64)}, 13)["x"]
  sv = lambda y: np.linalg.svd(np.asarray(y, np.float64), compute_uv=False)  # noqa: E731
  assert sv(normax.precondition(x, "aol")).min() > sv(normax.precondition(x, "frobenius")).min()
  aol4 = sv(normax.newton_schulz(x, steps=4, preconditioning="aol"))
  fro5 = sv(normax.newton_schulz(x, steps=5))
  assert aol4.min() >= fro5.min()


def test_adaptive_is_scale_by_dual_norm_with_attained_dual_norm():
  g = rand_tree({"w": (6, 10)}, 14)["w"]
  spectral = normax.Spectral()
  tx = normax.scale_by_dual_norm(spectral, exact=False)
  u, _ = tx.update(g, tx.init(g))
  d = np.asarray(spectral.dualize(g), np.float64)
  np.testing.assert_allclose(u, np.sum(np.asarray(g, np.float64) * d) * d, rtol=1e-5)
  # With an exact dualizer the attained dual norm is the dual norm (nuclear norm · scale).
  exact = normax.Spectral(method="svd")
  tx_in, tx_ex = normax.scale_by_dual_norm(exact, exact=False), normax.scale_by_dual_norm(exact)
  u_in, _ = tx_in.update(g, tx_in.init(g))
  u_ex, _ = tx_ex.update(g, tx_ex.init(g))
  np.testing.assert_allclose(u_in, u_ex, rtol=1e-4)


def np_normuon(outs, b2, eps=1e-10):
  """NorMuon's per-neuron normalization (Li et al., 2025, Alg. 1) in (fan_in, fan_out) layout."""
  v = np.zeros(outs[0].shape[1])
  res = []
  for o in outs:
    o = np.asarray(o, np.float64)
    v = b2 * v + (1 - b2) * np.mean(o**2, axis=0)
    y = o / (np.sqrt(v) + eps)
    res.append(y * np.linalg.norm(o) / (np.linalg.norm(y) + eps))
  return res


def test_scale_by_neuron_rms_matches_numpy():
  outs = [rand_tree({"o": (5, 7)}, 20 + t)["o"] for t in range(3)]
  tx = normax.scale_by_neuron_rms(0.9)
  state = tx.init(outs[0])
  for o, expected in zip(outs, np_normuon(outs, 0.9), strict=True):
    u, state = tx.update(o, state)
    np.testing.assert_allclose(u, expected, rtol=1e-5)


def test_normuon_in_muon_equalizes_neurons():
  params = rand_tree({"w": (12, 6)}, 15)
  g = rand_tree({"w": (12, 6)}, 16)
  tx = normax.muon(0.1, normuon=True, normuon_b2=0.0)
  u, _ = tx.update(g, tx.init(params), params)
  col = np.linalg.norm(np.asarray(u["w"]), axis=0)
  np.testing.assert_allclose(col, col.mean(), rtol=1e-4)
  plain = normax.muon(0.1)
  u0, _ = plain.update(g, plain.init(params), params)
  np.testing.assert_allclose(np.linalg.norm(u["w"]), np.linalg.norm(u0["w"]), rtol=1e-5)


def test_cautious_weight_decay_matches_numpy():
  params = rand_tree({"w": (6, 8)}, 17)
  g = rand_tree({"w": (6, 8)}, 18)
  lr, wd = 0.1, 0.3
  plain = normax.muon(lr)
  u0, _ = plain.update(g, plain.init(params), params)
  tx = normax.muon(lr, weight_decay=wd, cautious_weight_decay=True)
  u, _ = tx.update(g, tx.init(params), params)
  step = -np.asarray(u0["w"]) / lr  # gradient-aligned update before decay
  x = np.asarray(params["w"])
  expected = -lr * (step + wd * x * (step * x >= 0))
  np.testing.assert_allclose(u["w"], expected, rtol=1e-5, atol=1e-7)
  assert 0 < np.mean(step * x >= 0) < 1  # the mask is not trivial here


@pytest.mark.parametrize("norm", ["frobenius", "spectral"])
def test_hyperball_keeps_the_norm_and_matches_numpy(norm):
  params = rand_tree({"w": (6, 8), "b": (8,)}, 19)
  lr = 0.05
  tx = normax.muon(lr, hyperball=norm, orthogonalizer=normax.Orthogonalizer(method="svd"))
  state = tx.init(params)
  size = lambda w: np.linalg.norm(w) if norm == "frobenius" else np.linalg.norm(w, 2)  # noqa: E731
  r0 = size(np.asarray(params["w"], np.float64))
  p = params
  for t in range(3):
    g = rand_tree({"w": (6, 8), "b": (8,)}, 30 + t)
    u, state = tx.update(g, state, p)
    if t == 0:  # W ← R·normalize(W − γ R·normalize(polar(g)))
      w = np.asarray(p["w"], np.float64)
      left, _, right = np.linalg.svd(np.asarray(g["w"], np.float64), full_matrices=False)
      o = left @ right
      new = w - lr * r0 * o / size(o)
      np.testing.assert_allclose(p["w"] + u["w"], r0 * new / size(new), rtol=1e-4, atol=1e-6)
    p = optax.apply_updates(p, u)
    np.testing.assert_allclose(size(np.asarray(p["w"], np.float64)), r0, rtol=1e-5)
  with pytest.raises(ValueError, match="weight_decay=0"):
    normax.muon(lr, hyperball=norm, weight_decay=0.1)


def test_variants_compose_under_jit_and_keep_zero_gradients_zero():
  params = rand_tree(MIXED, 21)
  tx = normax.muon(
    0.02,
    muon_weight_dimension_numbers=MIXED_DIMS,
    output_blocks={"stack": 2, "conv": 2, "bias": None, "w": None},
    normuon=True,
    adaptive=True,
    preconditioning="aol",
    consistent_rms=0.2,
  )
  zero = jax.tree.map(jnp.zeros_like, params)
  u, _ = jax.jit(tx.update)(zero, tx.init(params), params)
  for k in params:
    assert u[k].shape == params[k].shape
    np.testing.assert_array_equal(u[k], 0.0)


def test_errors_name_the_fix():
  with pytest.raises(ValueError, match="shape_scaling"):
    normax.muon(0.02, shape_scaling="mup")
  with pytest.raises(ValueError, match=r"ns_steps >= 5"):
    normax.muon(0.02, ns_coeffs="dion", ns_steps=3)
  with pytest.raises(ValueError, match="preconditioning"):
    normax.muon(0.02, preconditioning="qr")
  with pytest.raises(TypeError, match="static_args"):
    normax.newton_schulz(jnp.ones((3, 3)), steps=jnp.asarray(3), coefficients="polar_express")


def test_rms_shape_scaling_is_the_scion_spectral_step():
  # shape_scaling="rms", no Nesterov, no bias correction, β = 0: one step is -γ·√(d_out/d_in)·UVᵀ.
  params = {"w": jnp.zeros((8, 3))}
  g = rand_like(params, 40)
  tx = normax.muon(
    0.1, beta=0.0, nesterov=False, bias_correction=False, shape_scaling="rms", ns_steps=30,
    ns_coeffs=normax.CUBIC,
  )  # fmt: skip
  u, _ = tx.update(g, tx.init(params), params)
  left, _, right = np.linalg.svd(np.asarray(g["w"], np.float64), full_matrices=False)
  np.testing.assert_allclose(u["w"], -0.1 * np.sqrt(3 / 8) * left @ right, atol=2e-5)


def test_labels_route_leaves_and_unknown_labels_are_errors():
  params = rand_tree(PLAIN, 41)
  labels = {"w_wide": "muon", "w_tall": "adam", "b": "adam", "scale": "adam"}
  tx = normax.muon(0.02, labels=labels)
  g = rand_like(params, 42)
  u, _ = tx.update(g, tx.init(params), params)
  # Adam's first Nesterov step has the sign of the gradient on every adam leaf.
  assert np.all(np.sign(u["w_tall"]) == -np.sign(g["w_tall"]))
  labels["b"] = "sgd"
  with pytest.raises(
    ValueError,
    match=r"(?s)Label 'sgd' has no entry in normax.muon.*'adam', 'muon'.*'sgd': b \("
    r".*'muon'.*'adam'",
  ):
    normax.muon(0.02, labels=labels).init(params)


@pytest.mark.parametrize("traced", [False, True])
def test_ns_precision_and_dtype_reach_the_iteration(traced):
  # Muon shares Scion's orthogonalizer options: the compiled update's matmuls carry the
  # precision asked for, and its iterate the compute dtype.
  params = {"w": jnp.ones((8, 16))}
  g = {"w": jax.random.normal(jax.random.key(0), (8, 16))}
  steps = jnp.asarray(5) if traced else 5

  def text(**kw):
    tx = normax.muon(0.1, ns_steps=steps, **kw)
    return str(jax.make_jaxpr(lambda g: tx.update(g, tx.init(params), params)[0])(g))

  orth = normax.Orthogonalizer
  assert "Precision.HIGHEST" not in text()
  assert "Precision.HIGHEST" in text(
    orthogonalizer=orth(method="newton_schulz", precision="highest")
  )
  assert "bf16" not in text()
  assert "bf16" in text(orthogonalizer=orth(compute_dtype=jnp.bfloat16))
