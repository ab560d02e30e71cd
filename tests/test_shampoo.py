"""Shampoo against a float64 numpy implementation of the algorithm, and its spectral limit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

# -- numpy reference (float64, one 2-D matrix and one block at a time) ----------


def np_blocks(x, b):
  """Zero-padded ``b_m×b_n`` blocks of a matrix, by grid index."""
  m, n = x.shape
  bm, bn = (m, n) if b is None else (min(m, b), min(n, b))
  gm, gn = -(-m // bm), -(-n // bn)
  pad = np.zeros((gm * bm, gn * bn))
  pad[:m, :n] = x
  return {
    (i, j): pad[i * bm : (i + 1) * bm, j * bn : (j + 1) * bn] for i in range(gm) for j in range(gn)
  }, (bm, bn)


def np_unblock(blocks, shape, bshape):
  m, n = shape
  bm, bn = bshape
  gm, gn = -(-m // bm), -(-n // bn)
  out = np.zeros((gm * bm, gn * bn))
  for (i, j), blk in blocks.items():
    out[i * bm : (i + 1) * bm, j * bn : (j + 1) * bn] = blk
  return out[:m, :n]


def np_inverse_root(a, e, eps):
  w, q = np.linalg.eigh(a)
  w = np.maximum(w, 0.0)
  den = w + eps * np.linalg.norm(a)
  inv = np.where(den > 0, np.where(den > 0, den, 1.0) ** -e, 0.0)
  return (q * inv) @ q.T


class NpShampoo:
  """One matrix; ``graft`` is None or ``"sign"`` (‖sign G‖_F step size)."""

  def __init__(self, beta2, e, eps, block, every, graft):
    self.beta2, self.e, self.eps, self.block, self.every, self.graft = (
      beta2,
      e,
      eps,
      block,
      every,
      graft,
    )
    self.t, self.state = 0, {}

  def step(self, g):
    self.t += 1
    blocks, bshape = np_blocks(g, self.block)
    out = {}
    for k, gb in blocks.items():
      left, right, lr, rr = self.state.get(k, (0.0, 0.0, None, None))
      if self.beta2 is None:
        left, right, corr = left + gb @ gb.T, right + gb.T @ gb, 1.0
      else:
        b = self.beta2
        left, right = b * left + (1 - b) * gb @ gb.T, b * right + (1 - b) * gb.T @ gb
        corr = 1 - b**self.t
      if (self.t - 1) % self.every == 0:
        lr, rr = (
          np_inverse_root(left / corr, self.e, self.eps),
          np_inverse_root(right / corr, self.e, self.eps),
        )
      self.state[k] = (left, right, lr, rr)
      out[k] = lr @ gb @ rr
    d = np_unblock(out, g.shape, bshape)
    if self.graft == "sign":
      d = d * np.linalg.norm(np.sign(g)) / np.linalg.norm(d)
    return d


def run_np(make, grads_seq):
  """Applies a fresh numpy optimizer per matrix of each leaf (leading axes are a batch)."""
  opts, outs = {}, []
  for grads in grads_seq:
    out = {}
    for name, g in grads.items():
      g = np.asarray(g, np.float64)
      res = np.zeros_like(g)
      for idx in np.ndindex(g.shape[:-2]):
        opt = opts.setdefault((name, idx), make())
        res[idx] = opt.step(g[idx])
      out[name] = res
    outs.append(out)
  return outs


def run_jax(tx, grads_seq):
  state = tx.init(grads_seq[0])
  update = jax.jit(tx.update)
  outs = []
  for grads in grads_seq:
    u, state = update(grads, state)
    outs.append(u)
  return outs, update


def grads_seq(shapes, steps, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
    for _ in range(steps)
  ]


SHAPES = {"stack": (2, 5, 7), "tall": (6, 4), "square": (3, 3)}


@pytest.mark.parametrize(
  "beta2, block, every, graft, root",
  [
    (0.9, None, 1, None, "eigh"),
    (0.9, 4, 2, None, "eigh"),
    (None, 3, 1, "sign", "eigh"),
    (0.9, 4, 2, None, "newton"),
  ],
)
def test_matches_numpy(beta2, block, every, graft, root):
  seq = grads_seq(SHAPES, 5)
  graft_norm = None if graft is None else normax.Sign(normalized=False)
  tx = normax.scale_by_shampoo(
    beta2=beta2,
    eps=1e-2,
    block_size=block,
    precondition_every=every,
    graft=graft_norm,
    root_method=root,
  )
  got, update = run_jax(tx, seq)
  want = run_np(lambda: NpShampoo(beta2, 0.25, 1e-2, block, every, graft), seq)
  for g, w in zip(got, want, strict=True):
    for k in SHAPES:
      np.testing.assert_allclose(g[k], w[k], rtol=2e-3, atol=2e-4)
  assert update._cache_size() == 1  # no recompilation after the first step


def test_no_accumulation_is_the_spectral_lmo():
  """β₂ = 0, e = 1/4: (GGᵀ)^{-1/4} G (GᵀG)^{-1/4} = UVᵀ = Spectral.dualize / √(d_out/d_in).

  Also for a rank-deficient gradient: G has no component on the factors' null spaces, so the
  regularized roots' large values there multiply zero (the pseudo-inverse's ``U Vᵀ``).
  """
  rng = np.random.default_rng(1)
  shapes = {"square": (4, 4), "tall": (6, 3), "wide": (3, 6), "stack": (2, 5, 4)}
  g = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
  low_rank = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 6))  # rank 2 of 6
  shapes["rank 2"], g["rank 2"] = (6, 6), jnp.asarray(low_rank, jnp.float32)
  spectral = normax.Spectral(method="svd")
  # eps = 1e-8: with 1e-10 the rank-deficient factors' float32 eigenvectors on their null space
  # carry ~3e-4 of rounding into the result (measured); 1e-8 keeps the bias from eps far below atol.
  plain = normax.scale_by_shampoo(beta2=0.0, eps=1e-8)
  grafted = normax.scale_by_shampoo(beta2=0.0, eps=1e-8, graft=spectral)
  u, _ = jax.jit(plain.update)(g, plain.init(g))
  v, _ = jax.jit(grafted.update)(g, grafted.init(g))
  for k, (d_in, d_out) in ((k, s[-2:]) for k, s in shapes.items()):
    # numpy's U Vᵀ over the nonzero singular values: the independent reference.
    left, sigma, right = np.linalg.svd(np.asarray(g[k], np.float64), full_matrices=False)
    keep = sigma > 1e-6 * sigma.max(axis=-1, keepdims=True)
    uvt = (left * keep[..., None, :]) @ right
    np.testing.assert_allclose(u[k], uvt, atol=2e-4)
    lmo = np.asarray(spectral.dualize(g[k]))  # = √(d_out/d_in)·UVᵀ
    np.testing.assert_allclose(lmo / np.sqrt(d_out / d_in), uvt, atol=2e-4)
    np.testing.assert_allclose(v[k], lmo, atol=2e-4)  # Grafted onto the spectral LMO's size.


@pytest.mark.parametrize("p", [2, 4])
def test_newton_inverse_root_matches_eigendecomposition(p):
  """``L = GGᵀ`` with eigenvalues spread over 3 decades, a batch of them."""
  rng = np.random.default_rng(4)
  q = np.linalg.qr(rng.standard_normal((3, 6, 6)))[0]
  w = 10.0 ** rng.uniform(-3, 0, (3, 6))
  a = (q * np.sqrt(w)[:, None, :]) @ np.swapaxes(q, -1, -2)  # a aᵀ = q w qᵀ
  g = {"w": jnp.asarray(a, jnp.float32)}
  want = np.stack([np_inverse_root(m @ m.T, 1 / p, 1e-6) for m in a])
  tx = normax.scale_by_shampoo(beta2=0.0, exponent=1 / p, eps=1e-6, root_method="newton")
  _, state = jax.jit(tx.update)(g, tx.init(g))
  # The cached root is stored at unit scale with its log2 scale (ShampooState).
  scale = np.exp2(np.asarray(state.left_root_scale["w"][:, 0, 0]))[:, None, None]
  np.testing.assert_allclose(state.left_root["w"][:, 0, 0] * scale, want, rtol=1e-3, atol=1e-3)


def test_newton_needs_an_integer_root():
  with pytest.raises(ValueError, match="exponent=0.3"):
    normax.scale_by_shampoo(exponent=0.3, root_method="newton")


def test_zero_gradient_gives_zero_update():
  g = {"w": jnp.zeros((4, 3))}
  for tx in (
    normax.scale_by_shampoo(),
    normax.scale_by_shampoo(graft="sign", block_size=2),
    normax.scale_by_shampoo(root_method="newton"),
  ):
    u, _ = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_array_equal(u["w"], np.zeros((4, 3)))


def test_vector_leaf_is_an_error_naming_it():
  tx = normax.scale_by_shampoo()
  with pytest.raises(ValueError, match=r"\['layer'\]\['bias'\] \(3,\).*optax.partition"):
    tx.init({"layer": {"bias": jnp.zeros(3), "kernel": jnp.zeros((3, 3))}})


def test_per_label_with_sign_head_descends():
  """Shampoo on hidden matrices, Sign on the head, biases on RMS, via optax.partition."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((64, 8)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((64, 3)), jnp.float32)
  params = {
    "hidden": {"kernel": jnp.asarray(0.3 * rng.standard_normal((8, 16)), jnp.float32)},
    "head": {"kernel": jnp.asarray(0.3 * rng.standard_normal((16, 3)), jnp.float32)},
    "bias": jnp.zeros(16),
  }

  def loss(p):
    h = jnp.tanh(x @ p["hidden"]["kernel"] + p["bias"][None, :])
    return jnp.mean((h @ p["head"]["kernel"] - y) ** 2)

  labels = {"hidden": {"kernel": "hidden"}, "head": {"kernel": "head"}, "bias": "bias"}
  tx = optax.chain(
    optax.partition(
      {
        "hidden": optax.chain(normax.scale_by_shampoo(), normax.momentum(0.9)),
        "head": optax.chain(normax.momentum(0.9), normax.scale_by_lmo("sign")),
        "bias": optax.chain(normax.momentum(0.9), normax.scale_by_lmo("bias_rms")),
      },
      labels,
    ),
    optax.scale_by_learning_rate(0.02),
  )
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  start = float(loss(params))
  for _ in range(60):
    params, state = step(params, state)
  assert float(loss(params)) < 0.7 * start
  assert step._cache_size() == 1


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
def test_sharded_parameters_under_jit():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", None))
  g = grads_seq({"w": (4, 6)}, 1)[0]
  tx = normax.scale_by_shampoo(block_size=4)
  want, _ = tx.update(g, tx.init(g))
  gs = jax.device_put(g, sharding)
  got, state = jax.jit(tx.update)(gs, tx.init(gs))
  np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-6)
  assert state.left["w"].shape == (1, 2, 4, 4)


@pytest.mark.slow  # a 30-step nnx training run
def test_nnx_scanned_model_per_label():
  """Shampoo (spectral-grafted) on hidden matrices of a scanned stack, Sign on the head."""
  from flax import nnx  # (imported here: test_flax pulls in flax and orbax)
  from test_flax import TOKENS, ScanGpt, train

  model = ScanGpt(nnx.Rngs(0))
  labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(model, TOKENS))
  branch = {
    label: optax.chain(
      normax.momentum(0.9), normax.scale_by_lmo(spec.norm), normax.scale_by_radius(spec.radius)
    )
    for label, spec in specs.items()
  }
  branch["hidden"] = optax.chain(
    normax.scale_by_shampoo(graft=normax.Spectral(method="svd"), precondition_every=2),
    normax.momentum(0.9),
    normax.scale_by_radius(specs["hidden"].radius),
  )
  tx = optax.chain(optax.partition(branch, labels), optax.scale_by_learning_rate(2**-6))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  losses = train(model, optimizer, 30)
  assert losses[-1] < 0.1 * losses[0], losses


@pytest.mark.parametrize(
  "kwargs",
  # (eps = 1e-3 with stale roots: a rank-1 factor's root regularized by 1e-6 amplifies the
  # float rounding of the next gradient ~1000×, at any scale.)
  [
    {},
    {"beta2": None},
    {"block_size": 4, "precondition_every": 2, "eps": 1e-3},
    {"root_method": "newton"},
  ],
  ids=["ema", "sums", "blocks_every2", "newton"],
)
def test_shampoo_does_not_depend_on_the_gradients_scale(kwargs):
  # With e = 1/4 the update L^(-1/4) G R^(-1/4) is scale-free. Factors formed as GGᵀ
  # overflowed at g·1e20 (NaN) and their norms at g·1e15 (a zero update), and underflowed at
  # g·1e-20 (a zero update): they are now stored with a scale of their own.
  seq = grads_seq({"w": (6, 5), "s": (2, 4, 6)}, 3)
  tx = normax.scale_by_shampoo(**kwargs)

  def run(c):
    state, outs = tx.init(seq[0]), []
    for g in seq:
      u, state = jax.jit(tx.update)(jax.tree.map(lambda x: x * c, g), state)
      outs.append(u)
    return outs

  want = run(1.0)
  # Powers of two (about 1e-30, 1e-20, 1e15, 1e20, 1e30) scale the gradients exactly.
  for c in (2.0**-100, 2.0**-66, 2.0**50, 2.0**66, 2.0**100):
    for got, ref in zip(run(c), want, strict=True):
      for k in ref:
        assert bool(jnp.isfinite(got[k]).all()), (c, k)
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-3, atol=2e-4, err_msg=f"{c} {k}")
  zero, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, seq[0]), tx.init(seq[0]))
  assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(zero))
