"""QK-Clip: against a numpy reference that rescales each head's slices by hand, per layout (Flax
multi-head attention, grouped-query nnx.Einsum, fused QKV, Linen attention in a scanned stack);
a no-op below τ; the max logit bounded at τ when recomputed on the same batch; under jit and
inside nnx.Optimizer; composed with Muon and Scion; and the errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import zoo
from flax import nnx

import normax

D, H, HD, KV = zoo.D, zoo.H, zoo.HD, zoo.KV


def flat(tree) -> dict[str, np.ndarray]:
  return {
    normax.path_to_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def random_like(tree, seed=0):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noise = [0.1 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
  return treedef.unflatten(noise)


def stepped(params, updates) -> dict[str, np.ndarray]:
  """``p + u`` per path: the weights the optimizer's step produces."""
  return flat(jax.tree.map(lambda p, u: p + u, params, updates))


def gamma(m, tau):
  m = np.asarray(m, np.float64)
  return np.where(m > tau, tau / np.maximum(m, tau), 1.0)


def clip_step(tx, params, updates, max_logits):
  """``p + u'`` per path, and ``u'``."""
  out, _ = tx.update(updates, tx.init(params), params, max_logits=max_logits)
  return flat(optax.apply_updates(params, out)), flat(out)


def check(new, expected, moved, updates):
  """Clipped leaves equal the reference; every other leaf's update passes bit for bit."""
  for path, want in expected.items():
    np.testing.assert_allclose(new[path], want, rtol=2e-6, atol=1e-7, err_msg=path)
  for path, u in flat(updates).items():
    if path not in expected:
      assert np.array_equal(moved[path], u), path


# -- the hand reference, per layout ---------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_multi_head_attention_matches_hand_reference(alpha):
  """nnx.MultiHeadAttention with biases: q/k kernels (d, heads, hd), biases (heads, hd)."""
  e = zoo.mha_decoder()
  roles = normax.infer_roles(e.model, *e.inputs)
  updates, tau = random_like(e.params), 100.0
  m = {"blocks/0/attn": jnp.array([50.0, 150.0, 250.0, 99.9]),
       "blocks/1/attn": jnp.array([300.0, 10.0, 101.0, 100.0])}  # fmt: skip
  tx = normax.qk_clip("blocks/*/attn", tau, alpha, roles=roles)
  new, moved = clip_step(tx, e.params, updates, m)
  w = stepped(e.params, updates)
  expected = {}
  for i in range(2):
    g = gamma(m[f"blocks/{i}/attn"], tau)
    for name, power in (("query", alpha), ("key", 1 - alpha)):
      kernel = w[f"blocks/{i}/attn/{name}/kernel"].copy()
      bias = w[f"blocks/{i}/attn/{name}/bias"].copy()
      for h in range(H):
        kernel[:, h, :] *= g[h] ** power
        bias[h, :] *= g[h] ** power
      expected[f"blocks/{i}/attn/{name}/kernel"] = kernel
      expected[f"blocks/{i}/attn/{name}/bias"] = bias
  check(new, expected, moved, updates)


@pytest.mark.parametrize("shared_key", ["query", "group"])
def test_grouped_query_attention_matches_hand_reference(shared_key):
  """nnx.Einsum q (d, 4 heads, hd) and k (d, 2 key heads, hd): query heads 2j, 2j+1 share key j."""
  e = zoo.einsum_gqa_tied()
  roles = normax.infer_roles(e.model, *e.inputs)
  updates, tau, alpha = random_like(e.params, 1), 100.0, 0.5
  m = {"blocks/0": jnp.array([400.0, 50.0, 90.0, 120.0]),
       "blocks/1": jnp.array([10.0, 20.0, 30.0, 40.0])}  # fmt: skip
  tx = normax.qk_clip("blocks/*", tau, alpha, roles=roles, shared_key=shared_key)
  new, moved = clip_step(tx, e.params, updates, m)
  w = stepped(e.params, updates)
  expected = {}
  for i in range(2):
    g = gamma(m[f"blocks/{i}"], tau)
    q, k = w[f"blocks/{i}/q/kernel"].copy(), w[f"blocks/{i}/k/kernel"].copy()
    for h in range(H):
      q[:, h, :] *= g[h] if shared_key == "query" else g[h] ** alpha
    if shared_key == "group":
      for j in range(KV):
        k[:, j, :] *= min(g[2 * j], g[2 * j + 1]) ** (1 - alpha)
    expected[f"blocks/{i}/q/kernel"], expected[f"blocks/{i}/k/kernel"] = q, k
  check(new, expected, moved, updates)


def test_fused_qkv_matches_hand_reference():
  """nnx.Linear(d, 3d) split by jnp.split (view blocks=3) and nnx.LinearGeneral(d, (3, H, hd))
  (the part axis a stack axis): q is part 0, k part 1, v untouched."""
  e = zoo.fused_qkv()
  roles = normax.infer_roles(e.model, *e.inputs)
  updates, tau, alpha = random_like(e.params, 2), 100.0, 0.25
  m = {"qkv": jnp.array([120.0, 80.0, 1000.0, 100.5]), "qkv2": jnp.array([5.0, 200.0, 0.0, 150.0])}
  layers = {"qkv": ("qkv/kernel", "qkv/kernel"), "qkv2": ("qkv2/kernel", "qkv2/kernel")}
  tx = normax.qk_clip(layers, tau, alpha, roles=roles)
  new, moved = clip_step(tx, e.params, updates, m)
  w = stepped(e.params, updates)
  g, g2 = gamma(m["qkv"], tau), gamma(m["qkv2"], tau)
  qkv, qkv2 = w["qkv/kernel"].copy(), w["qkv2/kernel"].copy()
  for h in range(H):
    qkv[:, h * HD : (h + 1) * HD] *= g[h] ** alpha  # the query block: columns [0, d)
    qkv[:, D + h * HD : D + (h + 1) * HD] *= g[h] ** (1 - alpha)  # the key block: [d, 2d)
    qkv2[:, 0, h, :] *= g2[h] ** alpha
    qkv2[:, 1, h, :] *= g2[h] ** (1 - alpha)
  check(new, {"qkv/kernel": qkv, "qkv2/kernel": qkv2}, moved, updates)


def test_linen_scanned_attention_matches_hand_reference():
  """Linen MultiHeadDotProductAttention under nn.scan: kernels (layers, d, H, hd), biases
  (layers, H, hd), one row of max logits per layer."""
  e = zoo.linen_decoder()
  roles = normax.infer_roles(e.model, e.variables, *e.inputs)
  updates, tau, alpha = random_like(e.params, 3), 100.0, 0.5
  layer = "ScanLinenBlock_0/MultiHeadDotProductAttention_0"
  m = {layer: jnp.array([[150.0, 20.0, 100.0, 400.0], [1.0, 2.0, 3000.0, 4.0]])}
  tx = normax.qk_clip("MultiHeadDotProductAttention_0", tau, alpha, roles=roles)
  new, moved = clip_step(tx, e.params, updates, m)
  w = stepped(e.params, updates)
  g = gamma(m[layer], tau)
  expected = {}
  for name in ("query", "key"):
    kernel, bias = w[f"{layer}/{name}/kernel"].copy(), w[f"{layer}/{name}/bias"].copy()
    for li in range(2):
      for h in range(H):
        kernel[li, :, h, :] *= g[li, h] ** 0.5
        bias[li, h, :] *= g[li, h] ** 0.5
    expected[f"{layer}/{name}/kernel"], expected[f"{layer}/{name}/bias"] = kernel, bias
  check(new, expected, moved, updates)


def test_two_dimensional_kernels_need_no_roles():
  """Separate (d, heads·hd) kernels (char_gpt's nnx.Linear attention) are read without roles."""
  params = {"attn": {"query": {"kernel": jnp.ones((8, 6))}, "key": {"kernel": jnp.ones((8, 6))}}}
  new, _ = clip_step(
    normax.qk_clip("attn", 10.0), params, jax.tree.map(jnp.zeros_like, params),
    {"attn": jnp.array([40.0, 5.0, 10.0])},
  )  # fmt: skip
  np.testing.assert_allclose(new["attn/query/kernel"][0], [0.5, 0.5, 1, 1, 1, 1], rtol=1e-6)
  np.testing.assert_allclose(new["attn/key/kernel"][0], [0.5, 0.5, 1, 1, 1, 1], rtol=1e-6)


# -- no-op below τ --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mha_decoder", "einsum_gqa_tied", "linen_decoder"])
def test_no_op_at_or_below_tau(name):
  """Max logits at or below τ (τ itself, negative, -inf for a fully masked head) leave every
  update as it is, bit for bit."""
  e = zoo.ZOO[name]()
  roles = normax.infer_roles(e.apply, e.params, *e.inputs)
  pattern = {"mha_decoder": "blocks/*/attn", "einsum_gqa_tied": "blocks/*"}.get(
    name, "MultiHeadDotProductAttention_0"
  )
  layers = normax.qk_layers(e.params, pattern)
  low = jnp.array([100.0, -3.0, -jnp.inf, 99.99])
  m = {n: jnp.broadcast_to(low, (2, H)) if name == "linen_decoder" else low for n in layers}
  updates = random_like(e.params, 4)
  _, moved = clip_step(normax.qk_clip(pattern, 100.0, roles=roles), e.params, updates, m)
  for path, u in flat(updates).items():
    assert np.array_equal(moved[path], u), path


# -- the bound, recomputed on the same batch -----------------------------------------------------


class RecordingBlock(nnx.Module):
  """nnx.MultiHeadAttention with biases, recording its max logits."""

  def __init__(self, rngs):
    self.attn = nnx.MultiHeadAttention(
      num_heads=H, in_features=D, decode=False, rngs=rngs,
      attention_fn=normax.attention_with_max_logits(),
    )  # fmt: skip

  def __call__(self, x):
    mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
    return x + self.attn(x, mask=mask, sow_weights=True)


class RecordingLM(nnx.Module):
  """Two attention blocks side by side on the embeddings (``sequential=False``), so that clipping
  one does not change the other's input, or one after the other."""

  def __init__(self, rngs, sequential=False):
    self.sequential = sequential
    self.embed = nnx.Embed(zoo.VOCAB, D, rngs=rngs)
    self.blocks = nnx.List([RecordingBlock(rngs) for _ in range(2)])
    self.head = nnx.Linear(D, zoo.VOCAB, rngs=rngs)

  def __call__(self, tokens):
    x = e = self.embed(tokens)
    for block in self.blocks:
      x = block(x) if self.sequential else x + block(e)
    return self.head(x)


class RecordingGqaBlock(zoo.GqaBlock):
  """The zoo's grouped-query block, recording ``normax.max_logits`` of its queries and keys."""

  def __call__(self, x):
    h = self.norm(x)
    q, k, v = self.q(h), self.k(h), self.v(h)
    self.sow(nnx.Intermediate, "max_logits", normax.max_logits(q, k, is_causal=True))
    y = jax.nn.dot_product_attention(q, jnp.repeat(k, H // KV, 2), jnp.repeat(v, H // KV, 2),
                                     is_causal=True)  # fmt: skip
    return x + self.o(y)


class RecordingGqa(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(zoo.VOCAB, D, rngs=rngs)
    self.blocks = nnx.List([RecordingGqaBlock(rngs) for _ in range(2)])

  def __call__(self, tokens):
    x = e = self.embed(tokens)
    for block in self.blocks:
      x = x + block(e)  # side by side, as RecordingLM
    return self.embed.attend(x)


class RecordingFused(nnx.Module):
  """A fused (d, 3d) QKV projection with a bias (3d,), split by jnp.split."""

  def __init__(self, rngs):
    self.embed = nnx.Embed(zoo.VOCAB, D, rngs=rngs)
    self.qkv = nnx.Linear(D, 3 * D, rngs=rngs)
    self.head = nnx.Linear(D, zoo.VOCAB, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    q, k, v = (y.reshape(*y.shape[:2], H, HD) for y in jnp.split(self.qkv(x), 3, axis=-1))
    self.sow(nnx.Intermediate, "max_logits", normax.max_logits(q, k, is_causal=True))
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return self.head(x + y.reshape(x.shape))


def roles_of(model, tokens):
  """The roles of a model that sows: traced inside nnx.capture, as its training step runs it."""
  return normax.infer_roles(lambda m, x: nnx.capture(m, nnx.Intermediate)(x)[0], model, tokens)


def grow_qk(model, factor):
  """Multiplies every query/key kernel and bias by ``factor`` (large logits)."""
  for path, var in nnx.iter_graph(model):
    names = [str(p) for p in path]
    if isinstance(var, nnx.Param) and any(n in ("query", "key", "q", "k", "qkv") for n in names):
      var[...] = var[...] * factor


def sown_max(model, tokens):
  _, sown = nnx.capture(model, nnx.Intermediate)(tokens)
  return sown, {k.rsplit("/max_logits", 1)[0]: np.asarray(v) for k, v in flat(sown).items()}


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize(
  ("make", "pattern", "shared_key"),
  [
    (RecordingLM, "blocks/*/attn", "query"),
    (RecordingGqa, "blocks/*", "query"),
    (RecordingGqa, "blocks/*", "group"),
    (RecordingFused, "/", "query"),
  ],
  ids=["mha_bias", "gqa_query", "gqa_group", "fused"],
)
def test_clipped_heads_come_back_to_tau(make, pattern, shared_key):
  """The max logits sown on a batch; clipping with them (a zero step) and recomputing on the same
  batch gives max ≤ τ·(1 + 1e-5) on every head, = τ on each clipped head (its largest in a group
  under shared_key='group'), unchanged below τ. Each layer reads the embeddings, so its input is
  the one its logits were measured on (stacked layers: the next test)."""
  model = make(nnx.Rngs(0))
  grow_qk(model, 4.0)
  tokens = jax.random.randint(jax.random.key(5), (3, zoo.T), 0, zoo.VOCAB)
  roles = roles_of(model, tokens)
  if make is RecordingFused:  # Its bias add sits between the product and the split, where
    # infer_roles does not see the three parts (yet): state the kernel's view.
    roles = roles.replace("qkv/kernel", normax.Role("hidden", normax.MatrixView(0, 1, blocks=3)))
  sown, before = sown_max(model, tokens)
  values = np.concatenate([v.ravel() for v in before.values()])
  tau = float(np.median(values))  # about half the heads above τ
  assert (values > tau * 1.01).sum() >= 2 and (values < tau).sum() >= 2, values
  tx = normax.qk_clip(pattern, tau, roles=roles, shared_key=shared_key)
  optimizer = nnx.Optimizer(model, optax.chain(optax.set_to_zero(), tx), wrt=nnx.Param)
  grads = nnx.state(model, nnx.Param)
  optimizer.update(model, grads, max_logits=sown)
  _, after = sown_max(model, tokens)
  for layer, m in before.items():
    m2 = after[layer]
    assert (m2 <= tau * (1 + 1e-5)).all(), (layer, m, m2)
    clipped = m > tau
    if shared_key == "group":
      groups = m.reshape(KV, H // KV)
      top = (groups == groups.max(-1, keepdims=True)).ravel() & clipped
      np.testing.assert_allclose(m2[top], tau, rtol=1e-4)
      assert (m2[clipped] <= m[clipped]).all()
    else:
      np.testing.assert_allclose(m2[clipped], tau, rtol=1e-4)
      np.testing.assert_allclose(m2[~clipped], m[~clipped], rtol=1e-5)


def test_stacked_layers_first_layer_exact_later_layers_close():
  """Layers one after the other: the first layer's input does not change, so its clipped heads
  come back to τ exactly; a later layer's input changes with the clip before it, so its maxima
  are recomputed on a different input (here within 1% of τ, not a bound)."""
  model = RecordingLM(nnx.Rngs(0), sequential=True)
  grow_qk(model, 4.0)
  tokens = jax.random.randint(jax.random.key(5), (3, zoo.T), 0, zoo.VOCAB)
  sown, before = sown_max(model, tokens)
  tau = float(np.median(np.concatenate(list(before.values()))))
  tx = normax.qk_clip("blocks/*/attn", tau, roles=roles_of(model, tokens))
  optimizer = nnx.Optimizer(model, optax.chain(optax.set_to_zero(), tx), wrt=nnx.Param)
  optimizer.update(model, nnx.state(model, nnx.Param), max_logits=sown)
  _, after = sown_max(model, tokens)
  first, second = before["blocks/0/attn"], before["blocks/1/attn"]
  assert (first > tau).any() and (second > tau).any()
  np.testing.assert_allclose(after["blocks/0/attn"][first > tau], tau, rtol=1e-4)
  assert (after["blocks/0/attn"] <= tau * (1 + 1e-5)).all()
  np.testing.assert_allclose(after["blocks/1/attn"][second > tau], tau, rtol=1e-2)


def test_linen_attention_records_and_comes_back_to_tau():
  """Linen MultiHeadDotProductAttention(attention_fn=normax.attention_with_max_logits()), sown
  into 'intermediates'; clipping with them bounds the recomputed max logit at τ."""

  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      attn = nn.MultiHeadDotProductAttention(
        num_heads=H, qkv_features=D, attention_fn=normax.attention_with_max_logits()
      )
      return x + attn(x, mask=nn.make_causal_mask(jnp.ones(x.shape[:2])), sow_weights=True)

  class LM(nn.Module):
    @nn.compact
    def __call__(self, tokens):
      e = nn.Embed(zoo.VOCAB, D)(tokens)
      return nn.Dense(zoo.VOCAB)(Block()(e) + Block()(e))  # side by side, as RecordingLM

  module = LM()
  tokens = jax.random.randint(jax.random.key(6), (3, zoo.T), 0, zoo.VOCAB)
  params = module.init(jax.random.key(0), tokens)["params"]
  params = jax.tree_util.tree_map_with_path(
    lambda p, x: x * 4.0 if "query" in normax.path_to_str(p) or "key" in normax.path_to_str(p)
    else x, params,
  )  # fmt: skip

  def measure(p):
    _, state = module.apply({"params": p}, tokens, mutable=["intermediates"])
    return state["intermediates"]

  sown = measure(params)
  before = {k.rsplit("/max_logits", 1)[0]: np.asarray(v) for k, v in flat(sown).items()}
  assert set(before) == {f"Block_{i}/MultiHeadDotProductAttention_0" for i in range(2)}
  tau = float(np.median(np.concatenate(list(before.values()))))
  roles = normax.infer_roles(module, params, tokens)
  tx = normax.qk_clip("MultiHeadDotProductAttention_0", tau, roles=roles)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params, max_logits=sown)
  after = flat(measure(optax.apply_updates(params, updates)))
  for layer, m in before.items():
    m2 = after[f"{layer}/max_logits/0"]
    assert (m2 <= tau * (1 + 1e-5)).all()
    np.testing.assert_allclose(m2[m > tau], tau, rtol=1e-4)
    np.testing.assert_allclose(m2[m <= tau], m[m <= tau], rtol=1e-5)


# -- measuring ------------------------------------------------------------------------------------


def test_max_logits_matches_numpy_loops():
  """Grouped-query heads, a padding mask and causality, against a loop over every entry."""
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
  k = rng.normal(size=(2, 6, 2, 3)).astype(np.float32)
  mask = np.ones((2, 1, 5, 6), bool)
  mask[1, :, :, 4:] = False  # padding in the second sequence
  got = np.asarray(normax.max_logits(q, k, mask=mask, is_causal=True))
  want = np.full(4, -np.inf)
  for b in range(2):
    for h in range(4):
      for i in range(5):
        for j in range(6):
          if j <= i and mask[b, 0, i, j]:
            want[h] = max(want[h], q[b, i, h] @ k[b, j, h // 2] / np.sqrt(3))
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_recording_attention_leaves_the_output_unchanged(kind):
  x = jax.random.normal(jax.random.key(0), (2, 5, D))
  if kind == "nnx":
    make = lambda fn: nnx.MultiHeadAttention(  # noqa: E731
      num_heads=H, in_features=D, decode=False, rngs=nnx.Rngs(0), attention_fn=fn
    )
    plain = make(nnx.dot_product_attention)(x, mask=nnx.make_causal_mask(jnp.ones((2, 5))))
    recording = make(normax.attention_with_max_logits())
    run = lambda m, x: m(x, mask=nnx.make_causal_mask(jnp.ones((2, 5))), sow_weights=True)  # noqa: E731
    out, sown = nnx.capture(run, nnx.Intermediate)(recording, x)
    assert sown["max_logits"][0].shape == (H,)
  else:
    module = lambda fn: nn.MultiHeadDotProductAttention(num_heads=H, attention_fn=fn)  # noqa: E731
    variables = module(nn.dot_product_attention).init(jax.random.key(0), x)
    plain = module(nn.dot_product_attention).apply(variables, x)
    out, state = module(normax.attention_with_max_logits()).apply(
      variables, x, sow_weights=True, mutable=["intermediates"]
    )
    assert state["intermediates"]["max_logits"][0].shape == (H,)
  np.testing.assert_allclose(out, plain, rtol=1e-6, atol=1e-6)


# -- jit, nnx.Optimizer, Muon and Scion -----------------------------------------------------------


def reference_clip(params, stepped, m, tau, alpha=0.5):
  """``stepped`` (the weights after the optimizer's step) with each layer's q/k heads rescaled
  by hand, for the zoo's nnx.MultiHeadAttention decoder."""
  out = dict(stepped)
  for layer, value in m.items():
    g = gamma(value, tau)
    for name, power in (("query", alpha), ("key", 1 - alpha)):
      for leaf in ("kernel", "bias"):
        w = out[f"{layer}/{name}/{leaf}"].copy()
        w[..., :, :] *= (g**power)[:, None]  # the last two axes are (heads, hd)
        out[f"{layer}/{name}/{leaf}"] = w
  return out


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize("optimizer", ["muon", "scion"])
def test_after_muon_and_scion_under_jit(optimizer):
  """``muon(..., qk_clip=)`` / ``scion(..., qk_clip=)`` under jit: the weights Muon (Scion) alone
  produces, rescaled by hand; the same as the one-line chain."""
  e = zoo.mha_decoder()
  roles = normax.infer_roles(e.model, *e.inputs)
  clip = normax.qk_clip("blocks/*/attn", 100.0, roles=roles)
  if optimizer == "muon":
    make = lambda **kw: normax.muon(0.05, roles=roles, **kw)  # noqa: E731
  else:
    labels, specs = normax.presets.scion_gpt(roles=roles)
    make = lambda **kw: normax.scion(0.05, specs, labels, **kw)  # noqa: E731
  grads = random_like(e.params, 7)
  m = {"blocks/0/attn": jnp.array([500.0, 50.0, 120.0, 80.0]),
       "blocks/1/attn": jnp.array([90.0, 200.0, 100.0, 1e4])}  # fmt: skip
  plain = make()
  u, _ = plain.update(grads, plain.init(e.params), e.params)
  stepped = flat(optax.apply_updates(e.params, u))
  want = reference_clip(flat(e.params), stepped, m, 100.0)
  for tx in (make(qk_clip=clip), optax.chain(plain, clip)):
    update = jax.jit(tx.update)
    out, _ = update(grads, tx.init(e.params), e.params, max_logits=m)
    new = flat(optax.apply_updates(e.params, out))
    for path in want:
      np.testing.assert_allclose(new[path], want[path], rtol=2e-5, atol=2e-6, err_msg=path)


def test_inside_nnx_optimizer_and_jit():
  """A jitted train step: the loss's forward pass sows the max logits, nnx.Optimizer passes them
  to update; the step's weights equal Muon's step clipped by hand with the sown values."""
  model = RecordingLM(nnx.Rngs(1))
  grow_qk(model, 4.0)
  tokens = jax.random.randint(jax.random.key(2), (3, zoo.T), 0, zoo.VOCAB)
  roles = normax.infer_roles(model, tokens)
  tau = float(np.median(np.concatenate(list(sown_max(model, tokens)[1].values()))))
  clip = normax.qk_clip("blocks/*/attn", tau, roles=roles)
  muon = normax.muon(0.02, roles=roles)
  before = jax.tree.map(jnp.array, nnx.as_pure(nnx.state(model, nnx.Param)))
  optimizer = nnx.Optimizer(model, normax.muon(0.02, roles=roles, qk_clip=clip), wrt=nnx.Param)

  def loss_fn(model):
    logits, sown = nnx.capture(model, nnx.Intermediate)(tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean(), sown

  @nnx.jit
  def step(model, optimizer):
    (loss, sown), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads, max_logits=sown)
    return grads, sown

  grads, sown = step(model, optimizer)
  m = {k.rsplit("/max_logits", 1)[0]: np.asarray(v) for k, v in flat(sown).items()}
  assert all((v > tau).any() for v in m.values())
  u, _ = muon.update(nnx.as_pure(grads), muon.init(before), before)
  want = reference_clip(flat(before), flat(optax.apply_updates(before, u)), m, tau)
  got = flat(nnx.state(model, nnx.Param))
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=2e-5, atol=2e-6, err_msg=path)


# -- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_problem():
  e = zoo.mha_decoder()
  roles = normax.infer_roles(e.model, *e.inputs)
  p, u = e.params, random_like(e.params)
  tx = normax.qk_clip("blocks/*/attn", roles=roles)
  state = tx.init(p)
  m = {f"blocks/{i}/attn": jnp.ones(H) for i in range(2)}
  with pytest.raises(ValueError, match="needs the forward pass's per-head max logits"):
    tx.update(u, state, p)
  with pytest.raises(ValueError, match="needs them"):
    tx.update(u, state, max_logits=m)
  with pytest.raises(ValueError, match=r"no entry for \['blocks/1/attn'\]"):
    tx.update(u, state, p, max_logits={"blocks/0/attn": jnp.ones(H)})
  with pytest.raises(ValueError, match="entries for no layer at"):
    tx.update(u, state, p, max_logits={**m, "blocks/0/mlp": jnp.ones(H)})
  with pytest.raises(ValueError, match="per_head"):
    per_head = normax.qk_clip("blocks/*/attn", roles=roles.per_head())
    per_head.update(u, state, p, max_logits=m)
  with pytest.raises(ValueError, match="infer_roles"):
    normax.qk_clip("blocks/*/attn").update(u, state, p, max_logits=m)
  with pytest.raises(ValueError, match="3 query heads"):
    tx.update(u, state, p, max_logits={k: jnp.ones(3) for k in m})
  with pytest.raises(ValueError, match="none has a query and key"):
    normax.qk_clip("blocks/*/mlp_norm", roles=roles).update(u, state, p, max_logits=m)
  with pytest.raises(ValueError, match="is not a parameter"):
    normax.qk_layers(p, {"a": ("blocks/0/attn/q/kernel", "blocks/0/attn/key/kernel")})
  with pytest.raises(ValueError, match="tau"):
    normax.qk_clip("attn", tau=0.0)
  with pytest.raises(ValueError, match="alpha"):
    normax.qk_clip("attn", alpha=1.5)
  with pytest.raises(ValueError, match="shared_key"):
    normax.qk_clip("attn", shared_key="key")
  with pytest.raises(TypeError, match="qk_clip"):
    normax.muon(0.1, qk_clip="yes")
