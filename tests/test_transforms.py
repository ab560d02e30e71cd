"""Contract suite over every normax transform and named optimizer, plus piece-level maths."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

NORMS = {"w": "spectral", "b": "bias_rms"}
SPECS = {
  "hidden": normax.LayerSpec("spectral", radius=1.0),
  "bias": normax.LayerSpec("bias_rms", radius=0.5),
}


def labels(tree):
  return jax.tree.map(lambda x: "hidden" if jnp.ndim(x) == 2 else "bias", tree)


def make_params(w_dtype=jnp.float32, b_dtype=jnp.float32, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {
    "w": (0.1 * jax.random.normal(k1, (4, 3))).astype(w_dtype),
    "b": (0.1 * jax.random.normal(k2, (3,))).astype(b_dtype),
  }


# Pieces are normax-only kernels (strict dtype promotion applies); optimizers use optax parts.
PIECES = {
  "momentum": lambda: normax.momentum(0.9),
  "momentum_nesterov_first_bf16": lambda: normax.momentum(
    0.9, nesterov=True, init="first_gradient", bias_correction=True, mu_dtype=jnp.bfloat16
  ),
  "scale_by_lmo": lambda: normax.scale_by_lmo(NORMS),
  "scale_by_radius": lambda: normax.scale_by_radius(
    {"w": 2.0, "b": optax.linear_schedule(1.0, 0.5, 10)}
  ),
  "add_constrained_decay": lambda: normax.add_constrained_decay(0.1),
  "scale_by_dual_norm": lambda: normax.scale_by_dual_norm(NORMS, 2.0),
  "scale_by_dual_norm_modular": lambda: normax.scale_by_dual_norm(NORMS, modular=True),
  "project_to_norm_ball": lambda: normax.project_to_norm_ball(NORMS, 0.05),
}
OPTIMIZERS = {
  "scion": lambda: normax.scion(0.05, SPECS, labels),
  "scion_unconstrained_nesterov": lambda: normax.scion(
    optax.cosine_decay_schedule(0.05, 100),
    SPECS,
    labels,
    constrained=False,
    nesterov=True,
    momentum_init="first_gradient",
    mu_dtype=jnp.bfloat16,
  ),
  "muon": lambda: normax.muon(0.02),
  "sign_descent": lambda: normax.sign_descent(0.01, beta=0.9),
  "normalized_sgd": lambda: normax.normalized_sgd(0.05),
  "steepest_descent": lambda: normax.steepest_descent(0.1, NORMS, 4.0),
}
ALL = {**PIECES, **OPTIMIZERS}


def grads_like(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
    [jax.random.normal(k, x.shape).astype(x.dtype) for k, x in zip(keys, leaves, strict=True)]
  )


def assert_finite(tree):
  for x in jax.tree.leaves(tree):
    assert bool(jnp.all(jnp.isfinite(x))), x


# -- the contract -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_jit_no_retrace(name):
  tx = ALL[name]()
  params = make_params()
  traces = []

  def step(params, state, grads):
    traces.append(1)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  jstep = jax.jit(step)
  state = tx.init(params)
  for t in range(3):
    params, state = jstep(params, state, grads_like(params, t))
  assert len(traces) == 1
  assert_finite(params)


@pytest.mark.parametrize("name", sorted(ALL))
def test_keeps_param_dtypes(name, request):
  # Strict promotion around normax's own pieces; named optimizers contain optax transforms,
  # which do not support it.
  if name in PIECES:
    request.getfixturevalue("strict_dtypes")
  tx = ALL[name]()
  params = make_params(w_dtype=jnp.bfloat16, b_dtype=jnp.float32)
  state = tx.init(params)
  for t in range(2):
    updates, new_state = tx.update(grads_like(params, t), state, params)
    assert jax.tree.map(lambda u: u.dtype, updates) == {"w": jnp.bfloat16, "b": jnp.float32}
    assert jax.tree.map(lambda s: s.dtype, new_state) == jax.tree.map(lambda s: s.dtype, state)
    assert_finite(updates)
    params, state = optax.apply_updates(params, updates), new_state


@pytest.mark.usefixtures("strict_dtypes")
def test_norm_pieces_strict_bf16():
  params = make_params(w_dtype=jnp.bfloat16)
  tx = normax.scale_by_lmo(NORMS)
  updates, _ = tx.update(grads_like(params, 0), tx.init(params))
  assert updates["w"].dtype == jnp.bfloat16
  assert_finite(updates)


@pytest.mark.parametrize("name", sorted(ALL))
def test_composes_in_partition(name):
  params = make_params()
  grads = grads_like(params, 0)
  alone = ALL[name]()
  u_alone, _ = alone.update(grads, alone.init(params), params)

  # Inside a partition the piece only sees "w" (the other leaf is masked out).
  part = optax.partition({"a": ALL[name](), "b": optax.sgd(0.1)}, {"w": "a", "b": "b"})
  u_part, _ = part.update(grads, part.init(params), params)
  np.testing.assert_allclose(u_part["b"], -0.1 * grads["b"], rtol=1e-6)
  if name not in ("scale_by_dual_norm_modular", "muon"):  # global factor / own partition
    np.testing.assert_allclose(u_part["w"], u_alone["w"], rtol=1e-5, atol=1e-7)
  assert_finite(u_part)


@pytest.mark.parametrize("name", sorted(ALL))
def test_multisteps_and_apply_if_finite(name):
  params = make_params()
  tx = optax.MultiSteps(ALL[name](), every_k_schedule=2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  u, state = update(grads_like(params, 0), state, params)
  assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))  # accumulating
  u, state = update(grads_like(params, 1), state, params)
  assert_finite(u)

  tx = optax.apply_if_finite(ALL[name](), max_consecutive_errors=3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads_like(params, 0))
  u, new_state = update(bad, state, params)
  assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
  assert int(new_state.notfinite_count) == 1
  u, new_state = update(grads_like(params, 1), new_state, params)
  assert_finite(u)
  assert int(new_state.notfinite_count) == 0


# With zero gradients only a decay term moves the weights: the update is c·x (c = 0 elsewhere).
ZERO_GRADIENT_UPDATE = {"add_constrained_decay": 0.1, "scion": -0.05}  # μ; -γμ (SCG, μ = 1)


@pytest.mark.parametrize("name", sorted(ALL))
def test_zero_gradients_give_zero_updates(name):
  # Non-zero weights inside every ball used here (so the projection leaves them alone).
  params = jax.tree.map(lambda x: 1e-3 * x, make_params())
  c = ZERO_GRADIENT_UPDATE.get(name, 0.0)
  tx = ALL[name]()
  state = tx.init(params)
  for _ in range(2):
    u, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    for x, p in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
      if c:
        np.testing.assert_allclose(x, c * p, rtol=1e-6)
      elif name == "project_to_norm_ball":  # P(x) - x, with P's SVD round trip for "w".
        np.testing.assert_allclose(x, 0, atol=1e-6 * float(jnp.abs(p).max()))
      else:
        np.testing.assert_array_equal(x, 0)


# -- inject_hyperparams -------------------------------------------------------

SCHED = optax.linear_schedule(0.5, 0.1, 4)
INJECTED = {
  "momentum": (normax.momentum, {"beta": SCHED}, ()),
  "scale_by_radius": (normax.scale_by_radius, {"radius": SCHED}, ()),
  "add_constrained_decay": (normax.add_constrained_decay, {"decay": SCHED}, ()),
  "scale_by_dual_norm": (normax.scale_by_dual_norm, {"norms": NORMS, "sharpness": SCHED}, ()),
  "project_to_norm_ball": (normax.project_to_norm_ball, {"norms": NORMS, "radius": SCHED}, ()),
  "scion": (
    normax.scion,
    {"learning_rate": SCHED, "specs": SPECS, "labels": labels, "beta": SCHED},
    ("labels",),
  ),
  "muon": (normax.muon, {"learning_rate": SCHED, "weight_decay": SCHED}, ("ns_steps",)),
  "steepest_descent": (normax.steepest_descent, {"learning_rate": SCHED, "norm": NORMS}, ()),
  "sign_descent": (normax.sign_descent, {"learning_rate": SCHED, "beta": 0.5}, ()),
  "normalized_sgd": (normax.normalized_sgd, {"learning_rate": SCHED}, ()),
}


@pytest.mark.parametrize("name", sorted(INJECTED))
def test_inject_hyperparams_matches_schedule(name):
  factory, kwargs, static = INJECTED[name]
  direct = factory(**kwargs)
  injected = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
  params = make_params()
  s_direct, s_inj = direct.init(params), injected.init(params)
  update = jax.jit(injected.update)
  for t in range(4):
    g = grads_like(params, t)
    u_direct, s_direct = direct.update(g, s_direct, params)
    u_inj, s_inj = update(g, s_inj, params)
    for a, b in zip(jax.tree.leaves(u_direct), jax.tree.leaves(u_inj), strict=True):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    scheduled = [k for k, v in kwargs.items() if v is SCHED]
    for k in scheduled:
      np.testing.assert_allclose(s_inj.hyperparams[k], SCHED(t), rtol=1e-6)
    params = optax.apply_updates(params, u_direct)


def test_inject_constant_radius_scales_updates():
  tx = optax.inject_hyperparams(normax.scale_by_radius)(radius=0.25)
  params = make_params()
  state = tx.init(params)
  g = grads_like(params, 0)
  u, state = tx.update(g, state)
  np.testing.assert_allclose(u["w"], 0.25 * g["w"], rtol=1e-6)
  state.hyperparams["radius"] = jnp.asarray(3.0)
  u, _ = tx.update(g, state)
  np.testing.assert_allclose(u["w"], 3.0 * g["w"], rtol=1e-6)


# -- descent on small problems ------------------------------------------------


def least_squares():
  k1, k2, k3 = jax.random.split(jax.random.key(42), 3)
  x = jax.random.normal(k1, (64, 4))
  w_true = 0.3 * normax.Spectral().init(k2, (4, 3))  # RMS→RMS norm 0.3, inside every ball
  b_true = 0.3 * jnp.sign(jax.random.normal(k3, (3,)))
  y = x @ w_true + b_true[None]

  def loss(p):
    return jnp.mean(jnp.square(x @ p["w"] + p["b"][None] - y))

  return loss


def softmax_regression():
  k1, k2 = jax.random.split(jax.random.key(7))
  x = jax.random.normal(k1, (96, 4))
  y = jnp.argmax(x @ jax.random.normal(k2, (4, 3)), axis=-1)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"][None], y).mean()

  return loss


DESCENT = {
  **{k: v for k, v in OPTIMIZERS.items()},
  "momentum": lambda: optax.chain(normax.momentum(0.9), optax.scale_by_learning_rate(0.1)),
  "scale_by_lmo": lambda: optax.chain(
    normax.scale_by_lmo(NORMS), optax.scale_by_learning_rate(0.02)
  ),
  "scale_by_radius": lambda: optax.chain(normax.scale_by_radius(0.5), optax.sgd(0.2)),
  "add_constrained_decay": lambda: optax.chain(
    normax.add_constrained_decay(0.01), optax.scale_by_learning_rate(0.1)
  ),
  "scale_by_dual_norm": lambda: optax.chain(
    normax.scale_by_dual_norm(NORMS, 10.0, modular=True), optax.scale_by_learning_rate(0.1)
  ),
  "project_to_norm_ball": lambda: optax.chain(
    optax.sgd(0.1), normax.project_to_norm_ball(NORMS, 5.0)
  ),
}


@pytest.mark.parametrize("problem", [least_squares, softmax_regression])
@pytest.mark.parametrize("name", sorted(DESCENT))
def test_descends(name, problem):
  loss = problem()
  tx = DESCENT[name]()
  params = jax.tree.map(jnp.zeros_like, make_params())
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  first = float(loss(params))
  for _ in range(60):
    params, state, _ = step(params, state)
  # Fixed-step norm methods stall at a radius ~lr around the optimum; ask for clear progress.
  assert float(loss(params)) < (0.5 if problem is least_squares else 0.75) * first


# -- piece-level maths --------------------------------------------------------


def test_momentum_variants_match_numpy():
  beta = 0.8
  rng = np.random.default_rng(0)
  gs = [rng.standard_normal(5).astype(np.float32) for _ in range(4)]
  for nesterov in (False, True):
    for init in ("zeros", "first_gradient"):
      for bias_correction in (False, True):
        tx = normax.momentum(beta, nesterov=nesterov, init=init, bias_correction=bias_correction)
        state = tx.init(jnp.zeros(5))
        d = np.zeros(5)
        for t, g in enumerate(gs, start=1):
          out, state = tx.update(jnp.asarray(g), state)
          d = (
            g.astype(np.float64)
            if (init == "first_gradient" and t == 1)
            else beta * d + (1 - beta) * g
          )
          if nesterov and bias_correction:
            want = beta * d / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
          elif nesterov:
            want = beta * d + (1 - beta) * g
          elif bias_correction:
            want = d / (1 - beta**t)
          else:
            want = d
          np.testing.assert_allclose(out, want, rtol=1e-5, err_msg=f"{nesterov} {init}")


def test_momentum_state_dtype_and_errors():
  tx = normax.momentum(0.9, mu_dtype=jnp.bfloat16)
  state = tx.init({"w": jnp.zeros(3)})
  assert state.trace["w"].dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="beta"):
    normax.momentum(1.0)
  with pytest.raises(ValueError, match="first_gradient"):
    normax.momentum(0.9, init="ones")


CONSTRAINT_NORMS = [
  normax.Spectral(method="svd"),
  normax.ColNorm(),
  normax.RowNorm(),
  normax.Sign(),
  normax.Sign(normalized=False),
  normax.Frobenius(),
  normax.SpectralConv(method="svd"),
  normax.BiasRMS(),
]


@pytest.mark.parametrize("norm", CONSTRAINT_NORMS, ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("lr", [2.0, 0.05])  # γμ = 1 (a full step) and γμ = 0.025.
def test_constrained_decay_stays_in_ball(norm, lr):
  rho, mu = 2.0, 0.5
  bound = rho / mu
  shape = {normax.SpectralConv: (3, 3, 4, 6), normax.BiasRMS: (8,)}.get(type(norm), (5, 7))
  key = jax.random.key(0)
  x = 0.9 * bound * norm.init(key, shape)
  tx = optax.chain(
    normax.scale_by_lmo(norm),
    normax.scale_by_radius(rho),
    normax.add_constrained_decay(mu),
    optax.scale_by_learning_rate(lr),
  )
  state = tx.init(x)
  update = jax.jit(tx.update)
  for t in range(8):
    g = 5.0 * jax.random.normal(jax.random.fold_in(key, t), shape)
    u, state = update(g, state, x)
    x = optax.apply_updates(x, u)
    assert float(norm.norm(x)) <= bound * (1 + 1e-5), (t, float(norm.norm(x)))
  # A full step (γμ = 1) lands on the sphere: x = -(ρ/μ)·dualize(g).
  if lr * mu == 1.0:
    np.testing.assert_allclose(norm.norm(x), bound, rtol=1e-5)


def test_scale_by_lmo_none_leaves_pass_through_and_prefix_trees():
  params = {"enc": {"w": jnp.ones((3, 4)), "v": jnp.ones((4, 2))}, "b": jnp.arange(3.0)}
  tx = normax.scale_by_lmo({"enc": "sign", "b": None})
  u, _ = tx.update(params, tx.init(params))
  np.testing.assert_allclose(u["enc"]["w"], np.full((3, 4), 1 / 3))
  np.testing.assert_allclose(u["enc"]["v"], np.full((4, 2), 1 / 4))
  np.testing.assert_array_equal(u["b"], params["b"])


def test_scale_by_lmo_callable_and_path_errors():
  params = {"layer": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}}
  tx = normax.scale_by_lmo(
    lambda t: jax.tree.map(lambda x: "spectral" if x.ndim == 2 else "bias_rms", t)
  )
  u, _ = tx.update(params, tx.init(params))
  np.testing.assert_allclose(u["layer"]["bias"], np.ones(4))
  with pytest.raises(ValueError, match=r"shape \(4,\) at 'layer/bias'"):
    normax.scale_by_lmo("spectral").update(params, optax.EmptyState())
  with pytest.raises(ValueError, match=r"(?s)does not match.*layer/kernel"):
    normax.scale_by_lmo({"other": "spectral"}).update(params, optax.EmptyState())
  with pytest.raises(TypeError, match="layer/kernel"):
    normax.scale_by_lmo({"layer": {"kernel": 3, "bias": None}}).update(params, optax.EmptyState())


def test_decay_needs_params():
  tx = normax.add_constrained_decay(1.0)
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_radius_schedule_per_leaf():
  tx = normax.scale_by_radius({"w": optax.linear_schedule(1.0, 0.0, 2), "b": None})
  g = {"w": jnp.ones(2), "b": jnp.ones(2)}
  state = tx.init(g)
  got = []
  for _ in range(3):
    u, state = tx.update(g, state)
    got.append(float(u["w"][0]))
    np.testing.assert_array_equal(u["b"], g["b"])
  assert got == [1.0, 0.5, 0.0]


# -- projection ---------------------------------------------------------------


@pytest.mark.parametrize(
  "norm",
  [
    normax.Spectral(),
    normax.SpectralConv(),
    normax.ColNorm(),
    normax.RowNorm(),
    normax.Sign(),
    normax.Sign(normalized=False),
    normax.BiasRMS(),
    normax.Frobenius(),
    normax.L1ToLp(2.0),
    normax.LpToLinf(2.0),
    normax.L1ToLp(3.0),
  ],
  ids=lambda n: repr(n)[:20],
)
def test_project_onto_ball_and_sphere(norm):
  shape = (3, 3, 4, 5) if isinstance(norm, normax.SpectralConv) else (6, 5)
  if isinstance(norm, normax.BiasRMS):
    shape = (7,)
  w = 3.0 * jax.random.normal(jax.random.key(0), shape)
  r = 0.7
  ball = normax.project(w, norm, r)
  sphere = normax.project(w, norm, r, sphere=True)
  assert float(norm.norm(ball)) <= r * (1 + 1e-5)
  np.testing.assert_allclose(norm.norm(sphere), r, rtol=1e-5)
  # Idempotent, and points already inside the ball are left alone.
  np.testing.assert_allclose(normax.project(ball, norm, r), ball, rtol=1e-5, atol=1e-6)
  inside = 0.5 * r * ball / norm.norm(ball)
  np.testing.assert_allclose(normax.project(inside, norm, r), inside, rtol=1e-5, atol=1e-6)
  # Zero stays zero.
  np.testing.assert_array_equal(normax.project(jnp.zeros(shape), norm, r, sphere=True), 0)


def test_project_spectral_clips_singular_values_like_numpy():
  w = np.random.default_rng(0).standard_normal((6, 4))
  r = 0.5
  bound = r * np.sqrt(4 / 6)  # ‖W‖ = √(d_in/d_out) σ_max ≤ r
  u, s, vt = np.linalg.svd(w, full_matrices=False)
  want = (u * np.minimum(s, bound)) @ vt
  got = normax.project(jnp.asarray(w, jnp.float32), normax.Spectral(), r)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_norm_of_ones_own_projects_with_its_own_project():
  """normax.project calls the norm's project: a user norm's own, else the radial retraction."""

  @dataclasses.dataclass(frozen=True)
  class MaxNorm(normax.Norm):  # ℓ∞ of a vector: its nearest point of the ball clips entries.
    min_ndim = 1

    def core_ndim(self, ndim):
      return 1

    def dualize(self, g):
      return jnp.sign(g)

    def dual_norm(self, g):
      return jnp.sum(jnp.abs(g), axis=-1)

    def norm(self, w):
      return jnp.max(jnp.abs(w), axis=-1)

  @dataclasses.dataclass(frozen=True)
  class ClippedMaxNorm(MaxNorm):
    def project(self, w, radius, sphere=False):
      assert w.dtype == jnp.float32 and radius.dtype == jnp.float32  # The compute dtype.
      return radius * jnp.sign(w) if sphere else jnp.clip(w, -radius, radius)

  w = jnp.array([3.0, -0.5, 0.0], jnp.bfloat16)
  radial = normax.project(w, MaxNorm(), 1.0)  # w · 1/3
  np.testing.assert_allclose(radial.astype(jnp.float32), [1.0, -0.5 / 3, 0.0], rtol=1e-2)
  clipped = normax.project(w, ClippedMaxNorm(), 1.0)
  assert clipped.dtype == jnp.bfloat16
  np.testing.assert_array_equal(clipped.astype(jnp.float32), [1.0, -0.5, 0.0])
  np.testing.assert_array_equal(normax.project(jnp.zeros((0,)), ClippedMaxNorm(), 1.0), [])


def test_project_to_norm_ball_transform_lands_on_projection():
  params = {"w": jnp.ones((4, 3)), "b": 5.0 * jnp.ones(3)}
  tx = optax.chain(optax.sgd(0.1), normax.project_to_norm_ball(NORMS, 1.0, sphere=True))
  g = grads_like(params, 0)
  u, _ = tx.update(g, tx.init(params), params)
  new = optax.apply_updates(params, u)
  want = normax.project(
    optax.apply_updates(params, jax.tree.map(lambda x: -0.1 * x, g)), NORMS, 1.0, sphere=True
  )
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_constant_radius_and_decay_keep_no_step_count():
  # A step count only where a schedule reads it; the updates are the same either way.
  params = {"w": jnp.full((2, 3), 2.0)}
  g = {"w": jnp.ones((2, 3))}
  for make in (
    normax.scale_by_radius,
    normax.add_constrained_decay,
    normax.add_cautious_weight_decay,
  ):
    constant, scheduled = make(0.5), make(optax.constant_schedule(0.5))
    assert isinstance(constant.init(params), optax.EmptyState)
    state = scheduled.init(params)
    assert int(state.count) == 0
    u1, _ = constant.update(g, constant.init(params), params)
    u2, state = scheduled.update(g, state, params)
    np.testing.assert_array_equal(u1["w"], u2["w"])
    assert int(state.count) == 1
