"""Properties every named optimizer keeps on random Flax-like parameter trees (hypothesis).

Trees mix what models hold: dense kernels and biases, scanned layer stacks, conv kernels,
embedding tables, norm scales, an output head, ``None`` entries and (through
``optax.partition``) integer leaves, in float32 or bfloat16. For each optimizer:

- finite gradients (at any scale) give finite updates;
- updates have the parameters' structure, shapes, dtypes and shardings;
- zero gradients give zero updates where no decay applies (Scion's constrained decay
  gives exactly ``-γ·x``);
- the state keeps its structure, shapes and dtypes from step to step;
- ``jax.jit`` gives what eager execution gives.

Every optimizer of ``normax.__all__`` (the named ones, the learning-rate-free ones, the
hyperball, Shampoo, SOAP) also meets its gradients at the edges, on trees in float32,
bfloat16 and float16 with scanned stacks and zero-size leaves: unit, tiny and huge (for the
dtype) gradients give finite updates, zero gradients zero updates (no decay), a NaN gives a
NaN where it went in; updates and state keep their shapes and dtypes.

Example counts are small and shapes tiny: JAX compiles every new tree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import normax

LR = 0.1

# One role per kind of parameter: (label, norm, radius).
SPECS = {
  "embed": normax.LayerSpec(normax.ColNorm(), 1.0),
  "conv": normax.LayerSpec(normax.SpectralConv(spatial_dims=2), 2.0),
  "hidden": normax.LayerSpec(normax.Spectral(), 3.0),
  "head": normax.LayerSpec(normax.Sign(), 10.0),
  "bias": normax.LayerSpec(normax.BiasRMS(), 0.5),
}
LABELS = normax.label_by_path(
  [
    ("*embedding", "embed"),
    ("*conv*/kernel", "conv"),
    ("*head/kernel", "head"),
    ("*bias", "bias"),
    ("*scale", "bias"),
    normax.Rule("*", "hidden", ndim=range(2, 8)),
  ]
)


def _norms(tree):
  return jax.tree.map(lambda label: SPECS[label].norm, LABELS(tree))


# name -> (factory, whether a zero gradient gives a zero update)
OPTIMIZERS = {
  "scion_constrained": (lambda: normax.scion(LR, SPECS, LABELS), False),
  "scion_unconstrained": (lambda: normax.scion(LR, SPECS, LABELS, constrained=False), True),
  "muon": (lambda: normax.muon(LR), True),
  "sign_descent": (lambda: normax.sign_descent(LR, beta=0.9), True),
  "normalized_sgd": (lambda: normax.normalized_sgd(LR, beta=0.9, nesterov=True), True),
  "steepest_descent": (lambda: normax.steepest_descent(LR, _norms), True),
}

D = 2  # One feature size, so that eager ops hit JAX's compile cache across examples.


@st.composite
def flax_like_trees(draw):
  """A params dict with a random selection of layers, in one float dtype."""
  dtype = draw(st.sampled_from([jnp.float32, jnp.bfloat16]))
  d = D
  layers = {
    "embed": {"embedding": (5, d)},
    "dense": {"kernel": (d, 2 * d), "bias": (2 * d,)},
    "blocks": {"mlp": {"kernel": (2, d, d), "bias": (2, d)}, "norm": {"scale": (2, d)}},
    "conv": {"kernel": (2, 2, 1, d), "bias": (d,)},
    "final_norm": {"scale": (d,)},
  }
  chosen = draw(st.lists(st.sampled_from(sorted(layers)), min_size=1, max_size=4, unique=True))
  shapes = {name: layers[name] for name in chosen}
  shapes["lm_head"] = {"kernel": (d, 4)}
  seed = draw(st.integers(0, 2**16))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
    lambda s: jnp.asarray(0.5 * rng.standard_normal(s), dtype),
    shapes,
    is_leaf=lambda x: isinstance(x, tuple),
  )
  if draw(st.booleans()):
    params["lm_head"]["bias"] = None  # An absent bias, as some pytrees spell it.
  return params


def _grads(params, seed, scale):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype),
    params,
  )


def _tol(dtype):
  return 1e-5 if dtype == jnp.float32 else 2e-2


def _assert_close(got, want):
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    atol = _tol(jnp.float32 if a.dtype == np.float64 else a.dtype)
    np.testing.assert_allclose(a, b, rtol=_tol(jnp.bfloat16), atol=atol * (1 + np.abs(b).max()))


def _leaf_specs(tree):
  return jax.tree.map(lambda x: (x.shape, x.dtype), tree)


@pytest.mark.slow  # A jit compile per example: about 1 s each on an idle CPU.
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@settings(max_examples=3, deadline=None)
@given(params=flax_like_trees(), log_scale=st.sampled_from([-20, 0, 20]))
def test_named_optimizers_keep_their_contract(name, params, log_scale):
  make, zero_to_zero = OPTIMIZERS[name]
  tx = make()
  dtype = jax.tree.leaves(params)[0].dtype
  state = tx.init(params)
  state_specs = _leaf_specs(state)
  grads = _grads(params, 0, 10.0**log_scale)

  update = jax.jit(tx.update)
  eager, state1 = tx.update(grads, state, params)
  jitted, state1_jit = update(grads, state, params)
  # Finite in, finite out; the params' structure, shapes, dtypes and shardings.
  assert jax.tree.structure(eager) == jax.tree.structure(params)
  for u, p in zip(jax.tree.leaves(eager), jax.tree.leaves(params), strict=True):
    assert u.shape == p.shape and u.dtype == p.dtype
    assert u.sharding == p.sharding
    assert bool(jnp.all(jnp.isfinite(u))), (name, u)
  # jit equals eager, updates and state.
  _assert_close(jitted, eager)
  _assert_close(state1_jit, state1)
  # The state keeps its structure, shapes and dtypes.
  assert _leaf_specs(state1) == state_specs
  _, state2 = update(_grads(params, 1, 1.0), state1, params)
  assert _leaf_specs(state2) == state_specs

  # Zero gradients from a fresh state: no update, or exactly the constrained decay -γ·x.
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  want = zeros if zero_to_zero else jax.tree.map(lambda p: -LR * p, params)
  _assert_close(updates, want)
  assert dtype in (jnp.float32, jnp.bfloat16)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_integer_leaves_are_named_or_set_aside_with_optax_partition(name):
  make, _ = OPTIMIZERS[name]
  params = {"dense": {"kernel": jnp.ones((3, 3))}, "lm_head": {"kernel": jnp.ones((3, 4))}}
  with_step = {**params, "step": jnp.zeros((), jnp.int32)}
  grads = jax.tree.map(jnp.ones_like, with_step)
  if name != "muon":  # Muon gives non-matrices to AdamW, which takes integers as they are.
    # Scion's labels have no rule for it; the norms refuse integer arrays.
    with pytest.raises((TypeError, ValueError), match=r"(?s)step.*int32"):
      make().update(grads, make().init(with_step), with_step)
  tx = optax.partition(
    {"float": make(), "int": optax.set_to_zero()},
    lambda t: jax.tree.map(
      lambda x: "float" if jnp.issubdtype(x.dtype, jnp.floating) else "int", t
    ),
  )
  updates, _ = jax.jit(tx.update)(grads, tx.init(with_step), with_step)
  assert updates["step"].dtype == jnp.int32 and int(updates["step"]) == 0
  assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


# -- every optimizer of normax.__all__: trees, dtypes and gradients at the edges --------


def _matrices(tree):
  """'matrix' for leaves of rank >= 2, 'other' for the rest (Shampoo, SOAP and the hyperball
  act on matrices only; the other leaves get sign descent)."""
  return jax.tree.map(lambda x: "matrix" if jnp.ndim(x) >= 2 else "other", tree)


def _on_matrices(matrix_tx):
  return optax.partition({"matrix": matrix_tx, "other": normax.sign_descent(LR)}, _matrices)


def _hyperball_norms(tree):
  return jax.tree.map(lambda x: "frobenius" if jnp.ndim(x) >= 2 else None, tree)


# name -> (factory, whether a zero gradient gives a zero update). Every optimizer and
# optimizer-like transform of normax.__all__ (test_every_optimizer_is_covered keeps it so).
ALL_OPTIMIZERS = {
  **OPTIMIZERS,
  "scion_projected": (lambda: normax.scion(LR, SPECS, LABELS, project=True), False),
  "muon_variants": (
    lambda: normax.muon(
      LR, normuon=True, cautious_weight_decay=True, weight_decay=0.01, preconditioning="aol"
    ),
    False,
  ),
  "steepest_modular": (lambda: normax.steepest_descent(LR, _norms, modular=True), True),
  "scion_free": (lambda: normax.scion_free(SPECS, LABELS), False),
  "muon_free": (lambda: normax.muon_free(), True),
  "adaptive_step": (
    lambda: optax.chain(
      normax.adaptive_step(optax.chain(normax.momentum(0.9), normax.scale_by_lmo(_norms)), _norms),
      optax.scale_by_learning_rate(LR),
    ),
    True,
  ),
  "hyperball": (
    lambda: _on_matrices(
      optax.chain(
        normax.momentum(0.9),
        normax.scale_by_lmo("spectral"),
        normax.hyperball(LR, norm=_hyperball_norms),
      )
    ),
    True,
  ),
  "shampoo": (
    lambda: _on_matrices(
      optax.chain(
        normax.scale_by_shampoo(block_size=4, precondition_every=2),
        normax.momentum(0.9),
        optax.scale_by_learning_rate(LR),
      )
    ),
    True,
  ),
  "soap": (
    lambda: _on_matrices(optax.chain(normax.scale_by_soap(), optax.scale_by_learning_rate(LR))),
    True,
  ),
}


def test_every_optimizer_is_covered():
  covered = {"scion", "muon", "sign_descent", "normalized_sgd", "steepest_descent"}
  covered |= {"scion_free", "muon_free", "adaptive_step", "hyperball"}
  covered |= {"scale_by_shampoo", "scale_by_soap"}
  # The optimizers: normax's own functions that return a GradientTransformation with a
  # learning rate or that precondition (a transform that only reshapes a step is a piece).
  pieces = {
    "momentum", "scale_by_lmo", "scale_by_radius", "add_constrained_decay",
    "add_cautious_weight_decay", "scale_by_dual_norm", "project_to_norm_ball",
    "scale_by_neuron_rms", "with_matrix_view",
    "qk_clip",  # Rescales weights from the forward pass's logits, not the gradient: test_qk_clip.
  }  # fmt: skip
  returns_tx = {
    name
    for name in normax.__all__
    if callable(obj := getattr(normax, name))
    and not isinstance(obj, type)
    and "GradientTransformation" in str(getattr(obj, "__annotations__", {}).get("return", ""))
  }
  assert returns_tx - pieces == covered, returns_tx - pieces ^ covered
  assert {n for n in ALL_OPTIMIZERS} >= {"scion_free", "muon_free", "shampoo", "soap"}


@st.composite
def edge_trees(draw):
  """A Flax-like params dict (see flax_like_trees), in float32, bfloat16 or float16, with
  scanned stacks and possibly a zero-size leaf."""
  dtype = draw(st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16]))
  d = D
  layers = {
    "embed": {"embedding": (5, d)},
    "dense": {"kernel": (d, 2 * d), "bias": (2 * d,)},
    "blocks": {"mlp": {"kernel": (2, d, d), "bias": (2, d)}, "norm": {"scale": (2, d)}},
    "final_norm": {"scale": (d,)},
    "empty": {"kernel": (0, d), "bias": (0,)},
  }
  chosen = draw(st.lists(st.sampled_from(sorted(layers)), min_size=1, max_size=4, unique=True))
  shapes = {name: layers[name] for name in chosen}
  shapes["lm_head"] = {"kernel": (d, 4)}
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  return jax.tree.map(
    lambda s: jnp.asarray(0.5 + rng.random(s), dtype) * jnp.asarray(rng.choice([-1, 1], s), dtype),
    shapes,
    is_leaf=lambda x: isinstance(x, tuple),
  )


def _edge_gradients(params, seed):
  """name -> gradients: unit, tiny and huge for the dtype, zero, and one NaN."""
  rng = np.random.default_rng(seed)
  unit = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params)
  fi = jnp.finfo(jax.tree.leaves(params)[0].dtype)
  out = {
    "unit": unit,
    "tiny": jax.tree.map(lambda g: g * jnp.asarray(float(fi.tiny) * 1e3, g.dtype), unit),
    "huge": jax.tree.map(lambda g: g * jnp.asarray(float(fi.max) / 64, g.dtype), unit),
    "zero": jax.tree.map(jnp.zeros_like, unit),
  }
  bad = jax.tree.map(lambda g: g, unit)
  bad["lm_head"]["kernel"] = bad["lm_head"]["kernel"].at[0, 0].set(jnp.nan)
  out["nan"] = bad
  return out


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
# Two trees per optimizer (one compile each; five gradient kinds reuse it); no shrinking.
@settings(max_examples=2, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(params=edge_trees())
def test_every_optimizer_at_the_edges(name, params):
  make, zero_to_zero = ALL_OPTIMIZERS[name]
  tx = make()
  state = tx.init(params)
  specs = _leaf_specs(state)
  update = jax.jit(tx.update)
  for kind, grads in _edge_gradients(params, 0).items():
    updates, new_state = update(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params), kind
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
      assert u.shape == p.shape and u.dtype == p.dtype, (kind, u.shape, u.dtype)
    assert _leaf_specs(new_state) == specs, kind
    finite = [bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates)]
    if kind == "nan":  # Non-finite in, NaN out where it went in: apply_if_finite can skip.
      assert not bool(jnp.isfinite(updates["lm_head"]["kernel"]).all()), kind
    else:  # Finite in (at any scale of the dtype), finite out.
      assert all(finite), (kind, finite)
    if kind == "zero" and zero_to_zero:
      assert all(float(jnp.abs(u).max(initial=0)) == 0 for u in jax.tree.leaves(updates)), kind


# -- a long run: constrained Scion never leaves its balls ----------------------------

BALL_SPECS = {
  "embed": normax.LayerSpec(normax.ColNorm(), 1.0),
  "exact": normax.LayerSpec(normax.Spectral(method="svd"), 3.0),
  "wide": normax.LayerSpec(normax.Spectral(), 3.0),  # Gram-form Newton–Schulz (the default).
  "stack": normax.LayerSpec(normax.Spectral(method="newton_schulz"), 3.0),  # Scanned stack.
  "conv": normax.LayerSpec(normax.SpectralConv(), 2.0),
  "head": normax.LayerSpec(normax.Sign(), 10.0),
  "l1": normax.LayerSpec(normax.L1ToLp(1.0), 2.0),
  "bias": normax.LayerSpec(normax.BiasRMS(), 0.5),
}
BALL_SHAPES = {
  "embed": (7, 4),
  "exact": (4, 6),
  "wide": (16, 64),
  "stack": (3, 8, 8),
  "conv": (2, 2, 3, 4),
  "head": (4, 5),
  "l1": (4, 6),
  "bias": (4,),
}


def _ball_history(dtype, learning_rate, steps, specs=BALL_SPECS, **kwargs):
  """``‖x‖/ρ`` per layer (the largest over a stack) after each of ``steps`` adversarial steps."""
  labels = {name: name for name in specs}
  tx = normax.scion(learning_rate, specs, labels, beta=0.5, **kwargs)
  keys = jax.random.split(jax.random.key(0), len(specs))
  params = {  # Start on each ball's boundary: the hardest place to stay inside.
    name: (spec.radius * spec.norm.init(key, BALL_SHAPES[name])).astype(dtype)
    for (name, spec), key in zip(specs.items(), keys, strict=True)
  }
  scales = jnp.array([1e30, 1e-30, 1.0, 3e4], jnp.float32)

  def ratios(p):
    return jnp.stack(
      [jnp.max(spec.norm.norm(p[n].astype(jnp.float32))) / spec.radius for n, spec in specs.items()]
    )

  def step(carry, t):
    p, state = carry
    flip = jnp.where((t // 3) % 2 == 0, 1.0, -1.0)  # Huge, tiny, unit, ... with flipping sign.
    key = jax.random.fold_in(jax.random.key(1), t)
    g = {
      n: (flip * scales[t % 4] * jax.random.normal(jax.random.fold_in(key, i), x.shape)).astype(
        dtype
      )
      for i, (n, x) in enumerate(p.items())
    }
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), ratios(p)

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(steps)))
  (final, _), history = run(params)
  assert all(x.dtype == dtype for x in jax.tree.leaves(final))
  return np.asarray(history)


@pytest.mark.slow  # One compile of the scanned step, and 10,000 steps.
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_constrained_scion_stays_in_its_balls_for_10000_adversarial_steps(dtype):
  # γ alternates between 1 (the step lands on the boundary) and 0.3. Every norm, Newton–Schulz
  # ones included (the quintic alone reached 1.2024 ρ), keeps ‖x‖ ≤ ρ up to rounding.
  history = _ball_history(dtype, lambda t: jnp.where(t % 2 == 0, 1.0, 0.3), 10_000)
  assert history.shape == (10_000, len(BALL_SPECS)) and np.isfinite(history).all()
  slack = 1e-4 if dtype == jnp.float32 else 2e-2  # bfloat16 rounds each new weight.
  for i, name in enumerate(BALL_SPECS):
    assert history[:, i].max() <= 1 + slack, (name, history[:, i].max())
  # The steps do move the weights (the check above is not vacuous).
  assert history[:, list(BALL_SPECS).index("exact")].min() > 0.3


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize("learning_rate", [1e-2, 1e-3])
def test_projected_scion_keeps_bfloat16_weights_in_their_balls_at_small_learning_rates(
  learning_rate,
):
  # Below bfloat16's resolution the decay (1 - γ)·x rounds back to x: L1ToLp(1) drifted to
  # 1.04 ρ at γ = 1e-2 and 1.44 ρ at 1e-3, Spectral to 1.22 ρ. project=True projects each
  # constrained layer back after the step: one rounding past the ball at most.
  specs = {name: BALL_SPECS[name] for name in ("l1", "stack", "head", "embed")}
  history = _ball_history(jnp.bfloat16, learning_rate, 1000, specs, project=True)
  assert np.isfinite(history).all()
  for i, name in enumerate(specs):
    assert history[:, i].max() <= 1 + 2**-7, (name, history[:, i].max())


def test_scion_warns_when_the_learning_rate_passes_the_center_of_the_ball():
  specs = {"h": normax.LayerSpec("sign"), "free": normax.LayerSpec("sign", decay=0.0)}
  labels = {"w": "h", "v": "free"}
  with pytest.warns(UserWarning, match=r"learning_rate·decay > 1 for \{'h': 1\.5\}"):
    normax.scion(1.5, specs, labels)
  normax.scion(1.0, specs, labels)  # γμ = 1 lands on the boundary: fine.
  normax.scion(1.5, specs, labels, project=True)  # Projected back: fine.
  normax.scion(1.5, specs, labels, constrained=False)  # No ball.
