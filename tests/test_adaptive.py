"""The adaptive step against optax's Prodigy and a float64 numpy implementation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

# A convex quadratic ½ Σ c ⊙ (x - x*)² with its minimizer far from the start.
SHAPES = {"w": (5, 3), "v": (4, 6), "b": (3,)}


def problem(shapes=SHAPES, seed=0):
  rng = np.random.default_rng(seed)
  x0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
  target = {k: x0[k] + 3.0 * rng.standard_normal(s) for k, s in shapes.items()}
  weight = {k: rng.uniform(0.5, 2.0, s) for k, s in shapes.items()}
  return x0, target, weight


def jax_loss(target, weight):
  t = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), target)
  c = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), weight)
  return lambda p: sum(0.5 * jnp.sum(c[k] * (p[k] - t[k]) ** 2) for k in p)


def run(tx, params, loss, steps):
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  for _ in range(steps):
    params, state = step(params, state)
  return params, state, step


def as_f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


@pytest.mark.parametrize(
  "beta3, learning_rate, safeguard",
  [(0.9, 1.0, False), (1.0, optax.linear_schedule(1.0, 0.2, 30), True), (0.999**0.5, 0.5, False)],
)
def test_elementwise_sign_case_is_prodigy(beta3, learning_rate, safeguard):
  """Sign(normalized=False), global scope, unit masses = optax.contrib.prodigy(betas=(0, 0), eps=0).

  Prodigy with β₁ = β₂ = 0 steps by d·λ·g/|g| (its bias corrections are 1),
  and its sums are weighted by λd²/d₀ (λd²·... with ``safeguard_warmup``
  dropping λ from ``s``): the same recursion as ``adaptive_step``.
  """
  x0, target, weight = problem()
  loss = jax_loss(target, weight)
  sign = normax.Sign(normalized=False)
  est = dict(beta3=beta3, d0=1e-3, coef=1.0)
  ours = optax.chain(
    normax.adaptive_step(
      normax.scale_by_lmo(sign),
      sign,
      learning_rate=learning_rate,
      safeguard_warmup=safeguard,
      **est,
    ),
    optax.scale(-1.0),
  )
  prodigy = optax.contrib.prodigy(
    learning_rate,
    betas=(0.0, 0.0),
    beta3=beta3,
    eps=0.0,
    estim_lr0=est["d0"],
    estim_lr_coef=est["coef"],
    safeguard_warmup=safeguard,
  )
  p_ours, s_ours, _ = run(ours, as_f32(x0), loss, 25)
  p_ref, s_ref, _ = run(prodigy, as_f32(x0), loss, 25)
  assert float(s_ref.estim_lr) > 50 * est["d0"]  # the estimate did grow
  np.testing.assert_allclose(s_ours[0].distance, s_ref.estim_lr, rtol=1e-5)
  for k in SHAPES:
    np.testing.assert_allclose(p_ours[k], p_ref[k], rtol=1e-5, atol=1e-5)


# -- numpy reference under the spectral norm ------------------------------------


def np_spectral_dualize(g):
  u, _, vt = np.linalg.svd(g, full_matrices=False)
  return np.sqrt(g.shape[1] / g.shape[0]) * (u @ vt)


def np_spectral_dual_norm(g):
  return np.sqrt(g.shape[1] / g.shape[0]) * np.linalg.svd(g, compute_uv=False).sum()


def np_spectral_norm(w):
  return np.sqrt(w.shape[0] / w.shape[1]) * np.linalg.svd(w, compute_uv=False).max()


def np_adaptive_spectral(x0, target, weight, masses, scope, steps, beta3, d0):
  """Adaptive steps of ``masses[l] · dualize_l(g_l)`` under the spectral norm, float64."""
  keys = list(x0)
  x = {k: x0[k].copy() for k in keys}
  s = {k: np.zeros_like(x0[k]) for k in keys}
  d = {k: d0 for k in keys} if scope == "leaf" else d0
  r = {k: 0.0 for k in keys} if scope == "leaf" else 0.0
  history = []
  for _ in range(steps):
    g = {k: weight[k] * (x[k] - target[k]) for k in keys}
    dk = dict(d) if scope == "leaf" else dict.fromkeys(keys, d)
    ips = {}
    for k in keys:
      w = dk[k] ** 2 / d0
      s[k] = beta3 * s[k] + w * g[k]
      ips[k] = w * np.sum(g[k] * (x0[k] - x[k]))
    if scope == "leaf":
      for k in keys:
        r[k] = beta3 * r[k] + ips[k]
        d[k] = max(d[k], r[k] / (masses[k] * np_spectral_dual_norm(s[k])))
    else:
      r = beta3 * r + sum(ips.values())
      d = max(d, r / sum(masses[k] * np_spectral_dual_norm(s[k]) for k in keys))
    for k in keys:
      x[k] = x[k] - dk[k] * masses[k] * np_spectral_dualize(g[k])
    history.append(d)
  return x, history


@pytest.mark.parametrize("scope", ["global", "leaf"])
def test_spectral_matches_numpy_and_never_overshoots(scope):
  shapes = {"w": (5, 3), "v": (4, 6)}
  x0, target, weight = problem(shapes, seed=1)
  masses = {"w": 1.0, "v": 0.5}
  spectral = normax.Spectral(method="svd")
  tx = optax.chain(
    normax.adaptive_step(
      optax.chain(normax.scale_by_lmo(spectral), normax.scale_by_radius(masses)),
      spectral,
      scope=scope,
      masses=masses,
      beta3=1.0,
      d0=1e-4,
    ),
    optax.scale(-1.0),
  )
  steps = 30
  params, state, step = run(tx, as_f32(x0), jax_loss(target, weight), steps)
  want_x, history = np_adaptive_spectral(x0, target, weight, masses, scope, steps, 1.0, 1e-4)
  for k in shapes:
    np.testing.assert_allclose(params[k], want_x[k], rtol=1e-3, atol=1e-3)
  # D-Adaptation's bound: d never exceeds the distance to the minimizer in the norm.
  dist = {k: np_spectral_norm(x0[k] - target[k]) / masses[k] for k in shapes}
  final = history[-1]
  if scope == "global":
    assert max(history) <= max(dist.values()) * (1 + 1e-9)
    assert final > 0.2 * max(dist.values())  # and it is not vacuous: d grew from 1e-4
    np.testing.assert_allclose(state[0].distance, final, rtol=1e-3)
  else:
    for k in shapes:
      assert max(h[k] for h in history) <= dist[k] * (1 + 1e-9)
      assert final[k] > 0.2 * dist[k]
      np.testing.assert_allclose(state[0].distance[k], final[k], rtol=1e-3)
  assert step._cache_size() == 1


# -- named optimizers -------------------------------------------------------------

SPECS = {
  "hidden": normax.LayerSpec(normax.Spectral(method="svd"), radius=2.0),
  "head": normax.LayerSpec("sign", radius=10.0),
  "bias": normax.LayerSpec("bias_rms", radius=0.5),
}
LABELS = {"w": "hidden", "v": "head", "b": "bias"}


@pytest.mark.parametrize("scope", ["global", "label", "leaf"])
def test_scion_free_first_step_is_scion_at_d0_and_it_descends(scope):
  x0, target, weight = problem()
  params, loss = as_f32(x0), jax_loss(target, weight)
  grads = jax.grad(loss)(params)
  # Unconstrained: the minimizer lies outside the radii's balls.
  free = normax.scion_free(SPECS, LABELS, scope=scope, d0=1e-3, relative_d0=0.0, constrained=False)
  u_free, _ = free.update(grads, free.init(params), params)
  scion = normax.scion(1e-3, SPECS, LABELS, constrained=False)
  u_scion, _ = scion.update(grads, scion.init(params), params)
  for k in SHAPES:
    np.testing.assert_allclose(u_free[k], u_scion[k], rtol=1e-5, atol=1e-9)
  final, state, step = run(free, params, loss, 60)
  assert float(loss(final)) < 0.5 * float(loss(params))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  assert step._cache_size() == 1


def test_muon_free_branches():
  """Muon leaves: -d₀·Spectral.dualize of the Nesterov momentum first; others: Prodigy."""
  x0, target, weight = problem()
  params, loss = as_f32(x0), jax_loss(target, weight)
  grads = jax.grad(loss)(params)
  labels = {"w": "muon", "v": "muon", "b": "adam"}
  tx = normax.muon_free(
    labels, d0=1e-3, relative_d0=0.0, orthogonalizer=normax.Orthogonalizer(method="svd")
  )
  u, _ = tx.update(grads, tx.init(params), params)
  muon = normax.muon(
    1e-3, labels=labels, shape_scaling="rms", orthogonalizer=normax.Orthogonalizer(method="svd")
  )
  u_muon, _ = muon.update(grads, muon.init(params), params)
  for k in ("w", "v"):
    np.testing.assert_allclose(u[k], u_muon[k], rtol=1e-5, atol=1e-9)
  final, _, _ = run(tx, params, loss, 40)
  b_only = optax.contrib.prodigy(1.0, estim_lr0=1e-3, beta3=0.999**0.5)
  ref, _, _ = run(b_only, {"b": params["b"]}, lambda p: loss({**params, "b": p["b"]}), 40)
  np.testing.assert_allclose(final["b"], ref["b"], rtol=1e-5, atol=1e-6)
  assert float(loss(final)) < float(loss(params))


def test_zero_gradients_give_zero_updates():
  params = as_f32(problem()[0])
  zeros = jax.tree.map(jnp.zeros_like, params)
  for scope in ("global", "leaf"):  # (unconstrained: the decay μ·x is not a gradient)
    tx = normax.scion_free(SPECS, LABELS, scope=scope, constrained=False)
    state = tx.init(params)
    for _ in range(2):
      u, state = tx.update(zeros, state, params)
    for k in SHAPES:
      np.testing.assert_array_equal(u[k], np.zeros(SHAPES[k]))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


def test_errors():
  params = as_f32(problem()[0])
  tx = normax.scion_free(SPECS, LABELS)
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update(params, tx.init(params))
  with pytest.raises(ValueError, match="scope"):
    normax.scion_free(SPECS, LABELS, scope="layer")
  with pytest.raises(ValueError, match=r"\['b'\]"):
    bare = normax.adaptive_step(normax.scale_by_lmo({"w": "sign", "v": "sign", "b": None}), None)
    bare.update(params, bare.init(params), params)


@pytest.mark.slow  # a 30-step nnx training run
def test_scion_free_trains_a_scanned_nnx_model_with_the_gpt_preset():
  """No learning rate: presets.scion_gpt's radii, a scanned stack, inside nnx.Optimizer."""
  from flax import nnx  # (imported here: test_flax pulls in flax and orbax)
  from test_flax import TOKENS, ScanGpt, train

  model = ScanGpt(nnx.Rngs(0))
  labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(model, TOKENS))
  optimizer = nnx.Optimizer(model, normax.scion_free(specs, labels), wrt=nnx.Param)
  losses = train(model, optimizer, 30)
  assert losses[-1] < 0.1 * losses[0], losses


def test_under_inject_hyperparams():
  params = as_f32(problem()[0])
  tx = optax.inject_hyperparams(normax.scion_free, static_args=("specs", "labels"))(
    specs=SPECS, labels=LABELS, learning_rate=0.5
  )
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(2):
    u, state = update(params, state, params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(u))
  assert float(state.hyperparams["learning_rate"]) == 0.5


# -- robustness (no silent failures) -----------------------------------------------

MUON_LABELS = {"w": "muon", "v": "muon", "b": "adam"}
SIGN = normax.Sign(normalized=False)
# Prodigy's start d0 = 1e-6 (relative_d0=0): the estimate must grow, where an outlier once
# stalled it.
FREE = {
  "scion_free": lambda **kw: normax.scion_free(
    SPECS, LABELS, constrained=False, **{"relative_d0": 0.0, **kw}
  ),
  "muon_free": lambda **kw: normax.muon_free(
    MUON_LABELS, orthogonalizer=normax.Orthogonalizer(method="svd"), **{"relative_d0": 0.0, **kw}
  ),
}


def train_with(tx, steps, scale_at=None):
  """Final loss and state after ``steps`` on the quadratic, the gradient of step
  ``t`` multiplied by ``scale_at[t]`` (an outlier, a NaN)."""
  x0, target, weight = problem()
  loss = jax_loss(target, weight)
  params, state = as_f32(x0), tx.init(as_f32(x0))

  @jax.jit
  def step(p, s, scale):
    g = jax.tree.map(lambda x: scale * x, jax.grad(loss)(p))
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  for t in range(steps):
    params, state = step(params, state, jnp.float32((scale_at or {}).get(t, 1.0)))
  return float(loss(params)), state


@pytest.mark.parametrize("name", FREE)
def test_one_outlier_gradient_does_not_stall_the_estimate(name):
  """A gradient x1e6 at step 20 once swamped the estimate's sum s: d stopped growing for
  good. Capped at `growth` x the last gradient's norm, the run recovers."""
  clean, _ = train_with(FREE[name](), 400)
  hit, _ = train_with(FREE[name](), 400, {20: 1e6})
  uncapped, _ = train_with(FREE[name](growth=math.inf), 400, {20: 1e6})
  start = float(jax_loss(*problem()[1:])(as_f32(problem()[0])))
  assert clean < 0.1 * start
  assert uncapped > 5 * clean  # The failure the cap prevents ...
  assert hit < 2 * clean  # ... and with it (muon_free's Adam leaves stall as Adam does).


@pytest.mark.parametrize("name", FREE)
def test_a_nan_gradient_leaves_the_estimate_finite(name):
  _, state = train_with(FREE[name](), 30, {20: math.nan})
  estimates = [
    s.distance for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "distance"))
    if hasattr(s, "distance")
  ]  # fmt: skip
  assert estimates and all(np.isfinite(d).all() and (d > 1e-6).all() for d in estimates)
  # Under optax.apply_if_finite the step is skipped: the same as never having taken it.
  skipped, _ = train_with(optax.apply_if_finite(FREE[name](), 5), 40, {20: math.nan})
  fewer, _ = train_with(FREE[name](), 39)
  np.testing.assert_allclose(skipped, fewer, rtol=1e-5)


@pytest.mark.parametrize("name", [*FREE, "adaptive_step"])
def test_parameters_can_be_donated(name):
  """The state holds its own copy of x0, so params and state can both be donated."""
  make = FREE.get(name) or (
    lambda: optax.chain(normax.adaptive_step(normax.scale_by_lmo(SIGN), SIGN), optax.scale(-1))
  )
  tx = make()
  x0, target, weight = problem()
  loss = jax_loss(target, weight)
  params = as_f32(x0)
  state = tx.init(params)
  step = jax.jit(
    lambda p, s: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(jax.grad(loss)(p), s, p)),
    donate_argnums=(0, 1),
  )
  for _ in range(3):
    params, state = step(params, state)
  assert np.isfinite(float(loss(params)))


def test_muon_free_on_float16_parameters_is_finite():
  x0, target, weight = problem()
  loss = jax_loss(target, weight)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float16), x0)
  tx = normax.muon_free(MUON_LABELS, orthogonalizer=normax.Orthogonalizer(method="svd"))
  state = tx.init(params)
  for _ in range(3):
    grads = jax.grad(lambda p: loss(jax.tree.map(lambda a: a.astype(jnp.float32), p)))(params)
    u, state = tx.update(grads, state, params)
    assert all(x.dtype == jnp.float16 and np.isfinite(x).all() for x in jax.tree.leaves(u))
    params = optax.apply_updates(params, u)


@pytest.mark.parametrize("name", FREE)
@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(learning_rate=np.float32(-0.5)), "learning_rate"),
    (dict(d0=-1e-6), "d0"),
    (dict(d0=jnp.array(-1.0)), "d0"),
    (dict(relative_d0=-1e-3), "relative_d0"),
    (dict(coef=math.nan), "coef"),
    (dict(coef=math.inf), "coef"),
    (dict(growth=0.5), "growth"),
  ],
)
def test_bad_settings_raise(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    FREE[name](**kwargs)


@pytest.mark.parametrize("scope", ["global", "leaf"])
def test_relative_start_is_a_fraction_of_the_initial_weights_norm(scope):
  """d₀ = max(d0, ε·‖x₀‖), ‖x₀‖ in the estimate's norm: the modular max_l ‖x_l‖_l / m_l."""
  x0 = as_f32(problem({"w": (5, 3), "v": (4, 6)})[0])
  masses = {"w": 1.0, "v": 0.5}
  spectral = normax.Spectral(method="svd")
  tx = normax.adaptive_step(
    normax.scale_by_lmo(spectral), spectral, scope=scope, masses=masses, relative_d0=1e-2
  )
  sizes = {k: np_spectral_norm(np.asarray(x0[k], np.float64)) / masses[k] for k in x0}
  distance = tx.init(x0).distance
  if scope == "global":
    np.testing.assert_allclose(distance, 1e-2 * max(sizes.values()), rtol=1e-5)
  else:
    for k in x0:
      np.testing.assert_allclose(distance[k], 1e-2 * sizes[k], rtol=1e-5)
  # Zero weights: the absolute floor d0.
  zeros = jax.tree.map(jnp.zeros_like, x0)
  assert float(jnp.min(jnp.stack(jax.tree.leaves(tx.init(zeros).distance)))) == pytest.approx(1e-6)


# -- the parents' routing and views ------------------------------------------------


def _by_path(tree):
  return dict(zip(jax.tree.leaves(normax.tree_paths(tree)), jax.tree.leaves(tree), strict=True))


def _normal_like(tree, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), tree)


def test_scion_free_orthogonalizes_attention_kernels_in_their_matrix_view():
  """nnx.MultiHeadAttention's q (d, heads, hd) and out (heads, hd, d) kernels, labelled from
  infer_roles: the first step is -d₀·ρ·UVᵀ of the d × heads·hd (heads·hd × d) matrix."""
  import zoo

  entry = zoo.mha_decoder()
  labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(entry.model, *entry.inputs))
  label = labels(entry.params)
  specs = {k: dataclasses.replace(s, norm=normax.Spectral(method="svd")) if k == "hidden" else s
           for k, s in specs.items()}  # fmt: skip
  params = jax.tree.map(jnp.zeros_like, entry.params)  # x = 0: no decay term
  grads = _normal_like(params, 0)
  tx = normax.scion_free(specs, labels, constrained=False)
  u, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
  u, g, label = _by_path(u), _by_path(grads), _by_path(label)
  for path, matrix in [
    ("blocks/0/attn/query/kernel", (32, 32)),
    ("blocks/1/attn/out/kernel", (32, 32)),
  ]:
    assert label[path] == "hidden"
    a, _, bt = np.linalg.svd(np.asarray(g[path], np.float64).reshape(matrix))
    expected = -1e-6 * specs["hidden"].radius * (a @ bt).reshape(g[path].shape)
    np.testing.assert_allclose(u[path], expected, rtol=1e-4, atol=1e-6 * 1e-5, err_msg=path)
    # Read without its view (leading axes as a stack), the step would be another matrix's.
    wrong = -1e-6 * specs["hidden"].radius * normax.Spectral(method="svd").dualize(g[path])
    assert np.abs(np.asarray(wrong) - expected).max() > 1e-7


def test_muon_free_routes_a_scanned_model_as_muon_does():
  """Scanned blocks: stacked kernels (3, d, d) on the spectral branch, stacked biases and
  gains (3, d) not, leaf by leaf as normax.muon routes them with the same roles."""
  from flax import nnx
  from test_flax import TOKENS, ScanGpt

  model = ScanGpt(nnx.Rngs(0))
  roles = normax.infer_roles(model, TOKENS)
  params = nnx.state(model, nnx.Param)
  grads = _normal_like(params, 1)
  svd = normax.Orthogonalizer(method="svd")

  def spectral_leaves(tx):
    """Paths whose first update has equal singular values in every matrix of the stack."""
    u, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
    out = set()
    for path, x in _by_path(u).items():
      if x.ndim >= 2:
        s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
        if np.all(s.min(-1) > (1 - 1e-4) * s.max(-1)):
          out.add(path)
    return out

  free = spectral_leaves(normax.muon_free(roles=roles, orthogonalizer=svd))
  muon = spectral_leaves(normax.muon(0.02, roles=roles, orthogonalizer=svd))
  assert free == muon == {"blocks/mlp/kernel"}
  # Without roles both take optax's rule (2-D leaves): the same, if not Muon practice.
  plain = spectral_leaves(normax.muon(0.02, orthogonalizer=svd))
  assert spectral_leaves(normax.muon_free(orthogonalizer=svd)) == plain
  assert "blocks/mlp/kernel" not in plain and "blocks/mlp/bias" in plain


def test_muon_free_prodigy_part_survives_zero_tiny_and_nan_gradients():
  """optax.contrib.prodigy's estimate is 0/0 = NaN when every gradient so far is zero (or so
  small that d·g underflows), and NaN forever after one NaN gradient; muon_free's keeps it."""
  params = {"w": jnp.ones((4, 8)), "b": jnp.full((8,), 0.5)}
  labels = {"w": "muon", "b": "adam"}
  tiny = float(jnp.finfo(jnp.float32).tiny) * 1e3
  g = {"w": jnp.ones((4, 8)), "b": jnp.linspace(-1.0, 1.0, 8)}
  for name, scale in (("zero", 0.0), ("tiny", tiny)):
    grads = jax.tree.map(lambda x, scale=scale: x * scale, g)
    ref = optax.contrib.prodigy(1.0, beta3=0.999**0.5)
    _, ref_state = ref.update({"b": grads["b"]}, ref.init({"b": params["b"]}), {"b": params["b"]})
    assert not np.isfinite(float(ref_state.estim_lr)), name  # optax's: 0/0.
    tx = normax.muon_free(labels)
    state = tx.init(params)
    for _ in range(3):
      u, state = tx.update(grads, state, params)
      assert all(np.isfinite(x).all() for x in jax.tree.leaves((u, state))), name
    if name == "zero":
      np.testing.assert_array_equal(u["b"], np.zeros(8))
  # A NaN gradient: its update is NaN (apply_if_finite can skip it), the estimate stays.
  tx = normax.muon_free(labels)
  state = tx.init(params)
  u, state = tx.update(g, state, params)
  bad = {"w": g["w"], "b": g["b"].at[0].set(jnp.nan)}
  u_bad, state_bad = tx.update(bad, state, params)
  assert not np.isfinite(u_bad["b"]).all()
  d = [x for x in jax.tree.leaves(state_bad) if x.shape == () and x.dtype == jnp.float32]
  assert d and all(np.isfinite(x) for x in d)
