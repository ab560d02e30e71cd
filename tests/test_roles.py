"""Roles and matrix views read from the computation, on Flax's own modules (tests/zoo.py).

Every expectation is written by hand in the zoo from the modules' definitions; the updates are
checked against numpy's SVD of each gradient in its true view and against optax.contrib.muon
configured by hand.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import zoo
from flax import nnx

import normax

ENTRIES = {name: make() for name, make in zoo.ZOO.items()}
ENTRY_IDS = list(ENTRIES)
# The fast loop runs two representative models; CI's full run every one.
FAST = ("mha_decoder", "conv1d")


def zoo_params(names=None):
  names = ENTRY_IDS if names is None else names
  return [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in names]


def shapes_of(entry):
  return {
    normax.path_to_str(p): tuple(np.shape(x))
    for p, x in jax.tree_util.tree_flatten_with_path(entry.params)[0]
  }


def same_view(a, b, shape) -> bool:
  if a is None or b is None:
    return a is b
  return a.resolve(len(shape)) == b.resolve(len(shape)) and a.blocks == b.blocks


def infer(entry, **kw):
  return normax.infer_roles(entry.apply, entry.params, *entry.inputs, **kw)


# -- roles and views ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENTRY_IDS)
def test_every_leaf_gets_the_hand_written_role_and_view(name):
  entry = ENTRIES[name]
  roles = infer(entry)
  shapes = shapes_of(entry)
  assert set(roles) == set(entry.expected) == set(shapes)
  for path, (kind, view) in entry.expected.items():
    role = roles[path]
    assert role.kind == kind, (path, role)
    assert same_view(role.view, view, shapes[path]), (path, role.view, view)
  # Per head: attention kernels become one matrix per head; nothing else changes.
  heads = infer(entry, per_head=True)
  for path, role in heads.items():
    want = entry.per_head.get(path, entry.expected[path][1])
    assert same_view(role.view, want, shapes[path]), (path, role.view, want)


@pytest.mark.parametrize("name", ["mha_decoder", "scanned_moe", "vit", "resnet", "linen_decoder"])
def test_module_call_forms_give_the_same_roles(name):
  entry = ENTRIES[name]
  by_fn = infer(entry)
  if isinstance(entry.model, nnx.Module):
    by_model = normax.infer_roles(entry.model, *entry.inputs)
    # An NNX module as the params of a function (e.g. a loss): split into its nnx.Param state.
    by_loss = normax.infer_roles(lambda m, x: m(x), entry.model, *entry.inputs)
    assert by_loss == by_model
  else:  # A Linen module with its whole variables dict (batch statistics included).
    mutable = ["batch_stats"] if "batch_stats" in entry.variables else False
    by_model = normax.infer_roles(entry.model, entry.variables, *entry.inputs, mutable=mutable)
  assert by_model.items() == by_fn.items()


def test_tracing_needs_no_data_and_no_flops():
  entry = ENTRIES["mha_decoder"]
  abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in entry.inputs]
  assert normax.infer_roles(entry.model, *abstract) == infer(entry)


def test_a_loss_function_finds_the_same_head():
  entry = ENTRIES["einsum_gqa_tied"]

  def loss(params, tokens):
    logits = entry.apply(params, tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()

  roles = normax.infer_roles(loss, entry.params, *entry.inputs)
  assert roles.items() == infer(entry).items()
  assert roles["embed/embedding"].kind == "tied"


def test_roles_are_a_label_function_for_wrapped_and_pure_states():
  entry = ENTRIES["mha_decoder"]
  roles = infer(entry)
  wrapped = nnx.state(entry.model, nnx.Param)
  pure = nnx.to_pure_dict(wrapped)
  labels = roles(wrapped)
  assert all(isinstance(x, str) for x in jax.tree.leaves(labels))
  assert jax.tree.leaves(labels) == jax.tree.leaves(roles(pure))
  assert roles(pure)["blocks"][0]["attn"]["query"]["kernel"] == "hidden"
  assert roles.relabel({k: "x" for k in normax.ROLES})(pure)["lm_head"]["kernel"] == "x"
  with pytest.raises(ValueError, match=r"relabel: no label for the role\(s\) 'bias' \(e.g."):
    roles.relabel({"hidden": "h"})
  with pytest.raises(ValueError, match=r"have no inferred role: \['extra \(2,\)'\]"):
    roles({**pure, "extra": jnp.zeros(2)})


def test_ambiguous_use_is_an_error_naming_the_leaf_and_overrides_settle_it():
  params = {"w": jnp.ones((4, 4)), "v": jnp.ones((4, 3))}

  def fn(p, x):  # w is used as W and as Wᵀ: two different contractions.
    return (x @ p["w"] + x @ p["w"].T) @ p["v"]

  with pytest.raises(ValueError) as info:
    normax.infer_roles(fn, params, jnp.ones((2, 4)))
  message = str(info.value)
  assert "'w' (shape (4, 4), float32)" in message and "different contractions" in message
  assert "overrides=" in message and "normax.MatrixView(fan_in=0, fan_out=1)" in message
  role = normax.Role("hidden", normax.MatrixView(0, 1))
  roles = normax.infer_roles(fn, params, jnp.ones((2, 4)), overrides={"w": role})
  assert roles["w"] == role and roles["v"].kind == "head"
  with pytest.raises(KeyError, match="not parameters"):
    normax.infer_roles(fn, params, jnp.ones((2, 4)), overrides={"u": role})


def test_flags_and_keyword_inputs_pass_through():
  params = {"w": jnp.ones((4, 3))}

  def fn(p, x, *, scale, train):
    y = x @ p["w"]
    return y * scale if train else y

  roles = normax.infer_roles(fn, params, jnp.ones((2, 4)), scale=2.0, train=True)
  assert roles["w"].kind == "head" and roles["w"].input


# -- the updates: exact polar factors in the true view --------------------------------------------


def true_view_polar(g, view, shape):
  """numpy: U Vᵀ of every matrix of ``g`` in ``view`` (the hand-written one), back in place."""
  mats = np.asarray(view.to(jnp.asarray(g)), np.float64)
  u, _, vt = np.linalg.svd(mats, full_matrices=False)
  return np.asarray(view.back(jnp.asarray(u @ vt, jnp.float32), shape))


def random_like(tree, seed=0):
  """Full-rank Gaussian "gradients" (a real gradient from a small batch is rank-deficient, and
  the polar factor of a rank-deficient matrix is not unique)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
    [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
  )


def loss_of(entry):
  def loss(params, *inputs):
    out = entry.apply(params, *inputs)
    return jnp.mean(jnp.square(out - 0.1))

  return loss


@pytest.mark.parametrize("name", zoo_params())
def test_scion_updates_are_exact_polar_factors_in_the_true_view(name):
  entry = ENTRIES[name]
  roles = infer(entry)
  grads = random_like(entry.params)
  svd = normax.Spectral(method="svd")
  specs = {  # Radius 1 and no momentum: the update is -dualize(g) in each leaf's view.
    "hidden": normax.LayerSpec(svd),
    "conv": normax.LayerSpec(normax.SpectralConv(method="svd")),
    "rest": normax.LayerSpec("bias_rms"),
    "table": normax.LayerSpec("colnorm"),
    "head": normax.LayerSpec("sign"),
  }
  mapping = {k: "rest" for k in normax.ROLES} | {
    "hidden": "hidden",
    "conv": "conv",
    "embed": "table",
    "tied": "head",
    "head": "head",
  }
  tx = normax.scion(1.0, specs, roles.relabel(mapping), beta=0.0, constrained=False)
  updates, _ = jax.jit(tx.update)(grads, tx.init(entry.params), entry.params)
  flat_u = {normax.path_to_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(updates)[0]}
  flat_g = {normax.path_to_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(grads)[0]}
  shapes = shapes_of(entry)
  checked = 0
  for path, (kind, view) in entry.expected.items():
    if kind not in ("hidden", "conv"):
      continue
    shape = shapes[path]
    # A conv kernel is one (taps·c_in, c_out) matrix (Scion's conv scaling: √(c_out/c_in)/taps).
    polar = true_view_polar(flat_g[path], view.merge_spatial(), shape)
    c_in, c_out = view.matrix_shape(shape)[-2:]
    taps = int(np.prod([shape[a] for a in view.resolve(len(shape))[1]]))
    scale = np.sqrt(c_out / c_in) / taps
    np.testing.assert_allclose(flat_u[path], -scale * polar, atol=2e-5, err_msg=path)
    checked += 1
  assert checked == sum(k in ("hidden", "conv") for k, _ in entry.expected.values())


def test_default_newton_schulz_runs_on_the_view_matrix():
  # The default (Newton–Schulz) Spectral on an attention kernel in its inferred view equals
  # normax.newton_schulz of the hand-reshaped d × (heads·hd) matrix.
  entry = ENTRIES["mha_decoder"]
  roles = infer(entry)
  g = jax.random.normal(jax.random.key(0), (zoo.D, zoo.H, zoo.HD))
  params = {"blocks": {0: {"attn": {"query": {"kernel": g}}}}}
  path = "blocks/0/attn/query/kernel"
  view = roles[path].view
  tx = normax.scale_by_lmo(normax.Spectral(), views=lambda t: {"blocks": {0: {"attn": {"query": {
    "kernel": view}}}}})  # fmt: skip
  out, _ = tx.update(params, tx.init(params))
  mat = g.reshape(zoo.D, zoo.H * zoo.HD)
  ref = normax.Spectral().dualize(mat)  # The same iteration on the matrix reshaped by hand.
  np.testing.assert_allclose(out["blocks"][0]["attn"]["query"]["kernel"].reshape(mat.shape), ref,
                             atol=1e-5)  # fmt: skip


# -- normax.muon ---------------------------------------------------------------------------------


def optax_dims(entry, muon_convs=True):
  """optax's MuonDimensionNumbers for Muon practice, written from the zoo's hand views."""
  shapes = shapes_of(entry)
  dims = {}
  for path, (kind, view) in entry.expected.items():
    if kind == "hidden" or (kind == "conv" and muon_convs):
      _, spatial, fan_in, fan_out = view.resolve(len(shapes[path]))
      dims[path] = optax.contrib.MuonDimensionNumbers(spatial + fan_in, fan_out)
    else:
      dims[path] = None
  return jax.tree_util.tree_map_with_path(lambda p, _: dims[normax.path_to_str(p)], entry.params)


def assert_same_updates(a, b, params, grads, atol=2e-5):
  ua, _ = jax.jit(a.update)(grads, a.init(params), params)
  ub, _ = jax.jit(b.update)(grads, b.init(params), params)
  for (p, x), y in zip(jax.tree_util.tree_flatten_with_path(ua)[0], jax.tree.leaves(ub),
                       strict=True):  # fmt: skip
    np.testing.assert_allclose(x, y, atol=atol, err_msg=normax.path_to_str(p))


# Blocks (a fused QKV kernel cut in three) have no optax spelling; the other models do.
MUON_IDS = [n for n in ENTRY_IDS if n != "fused_qkv"]


@pytest.mark.parametrize("name", zoo_params(MUON_IDS))
def test_muon_with_roles_equals_optax_muon_given_the_views_by_hand(name):
  entry = ENTRIES[name]
  grads = random_like(entry.params)
  ours = normax.muon(0.02, roles=infer(entry))
  ref = optax.contrib.muon(0.02, muon_weight_dimension_numbers=optax_dims(entry))
  assert_same_updates(ref, ours, entry.params, grads)


def test_muon_roles_cut_a_fused_qkv_kernel_in_three():
  entry = ENTRIES["fused_qkv"]
  grads = random_like(entry.params)
  tx = normax.muon(
    1.0,
    roles=infer(entry),
    orthogonalizer=normax.Orthogonalizer(method="svd"),
    beta=0.0,
    nesterov=False,
  )
  updates, _ = tx.update(grads, tx.init(entry.params), entry.params)
  g = np.asarray(grads["qkv"]["kernel"], np.float64)
  u = np.asarray(updates["qkv"]["kernel"])
  for i in range(3):
    left, _, right = np.linalg.svd(g[:, zoo.D * i : zoo.D * (i + 1)], full_matrices=False)
    np.testing.assert_allclose(u[:, zoo.D * i : zoo.D * (i + 1)], -left @ right, atol=2e-5)


@pytest.mark.parametrize("name", zoo_params())
def test_muon_called_like_optax_equals_optax(name):
  entry = ENTRIES[name]
  grads = random_like(entry.params)
  assert_same_updates(optax.contrib.muon(0.02), normax.muon(0.02), entry.params, grads)


def test_muon_convs_false_sends_conv_kernels_to_adamw():
  entry = ENTRIES["resnet"]
  grads = random_like(entry.params)
  ours = normax.muon(0.02, roles=infer(entry), muon_convs=False)
  dims = optax_dims(entry, muon_convs=False)
  assert all(d is None for d in jax.tree.leaves(dims, is_leaf=lambda x: x is None))
  ref = optax.contrib.muon(0.02, muon_weight_dimension_numbers=dims)
  assert_same_updates(ref, ours, entry.params, grads)
  with pytest.raises(TypeError, match="roles decide the routing"):
    normax.muon(0.02, roles=infer(entry), labels=lambda t: t)


def test_muon_labels_with_a_rank3_leaf_and_no_view_is_an_error():
  params = {"attn": {"query": jnp.ones((8, 2, 4))}, "w": jnp.ones((8, 8))}
  labels = normax.label_by_path([("*", "muon")])
  with pytest.raises(
    ValueError, match=r"\['attn/query \(8, 2, 4\)'\] are labelled 'muon'.*infer_roles"
  ):
    normax.muon(0.02, labels=labels).update(params, normax.muon(0.02, labels=labels).init(params))
  view = normax.MatrixView(fan_in=0, fan_out=(1, 2))
  labels = normax.label_by_path([normax.Rule("query", "muon", view=view), ("*", "muon")])
  ref = optax.contrib.muon(
    0.02, muon_weight_dimension_numbers={"attn": {"query": optax.contrib.MuonDimensionNumbers(
      0, (1, 2))}, "w": optax.contrib.MuonDimensionNumbers()})  # fmt: skip
  grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(x.size), x.shape), params)
  assert_same_updates(ref, normax.muon(0.02, labels=labels), params, grads)


# -- presets -------------------------------------------------------------------------------------

PRESET_OF = {
  "mha_decoder": normax.presets.scion_gpt,
  "einsum_gqa_tied": normax.presets.scion_gpt_tied,
  "fused_qkv": normax.presets.scion_gpt,
  "scanned_moe": normax.presets.scion_gpt,
  "routed_moe": normax.presets.scion_gpt,
  "linen_decoder": normax.presets.scion_gpt,
  "vit": normax.presets.scion_cnn,
  "resnet": normax.presets.scion_cnn,
  "conv1d": normax.presets.scion_cnn,
}


@pytest.mark.parametrize("name", zoo_params())
def test_name_based_presets_route_correctly_or_raise(name):
  entry = ENTRIES[name]
  labels, specs = PRESET_OF[name]()
  shapes = shapes_of(entry)
  try:
    resolved = normax.resolve_specs(entry.params, labels, specs)
  except ValueError as e:
    assert "infer_roles" in str(e) or "required" in str(e) or "No parameter got" in str(e)
    return
  flat = {normax.path_to_str(p): s for p, s in jax.tree_util.tree_flatten_with_path(
    resolved, is_leaf=lambda x: isinstance(x, normax.LayerSpec))[0]}  # fmt: skip
  for path, (kind, view) in entry.expected.items():
    if kind in ("hidden", "conv", "head", "tied"):
      spec = flat[path]
      got = spec.view or normax.MatrixView(-2, -1, spatial=tuple(range(len(shapes[path]) - 2))
                                           if kind == "conv" else ())  # fmt: skip
      assert same_view(got, view, shapes[path]) or kind == "tied", (path, got, view)


@pytest.mark.parametrize("name", zoo_params())
def test_presets_with_roles_train(name):
  entry = ENTRIES[name]
  labels, specs = PRESET_OF[name](roles=infer(entry))
  tx = normax.scion(2**-7, specs, labels)
  loss = loss_of(entry)
  params, state = entry.params, tx.init(entry.params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params, *entry.inputs)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  first = None
  for _ in range(5):
    params, state, value = step(params, state)
    first = value if first is None else first
  _, _, last = step(params, state)
  assert np.isfinite(last) and last < first


def test_preset_refuses_the_wrong_family():
  with pytest.raises(ValueError, match="use normax.presets.scion_gpt_tied"):
    normax.presets.scion_gpt(roles=infer(ENTRIES["einsum_gqa_tied"]))
  with pytest.raises(ValueError, match="use normax.presets.scion_gpt"):
    normax.presets.scion_gpt_tied(roles=infer(ENTRIES["mha_decoder"]))
  with pytest.raises(ValueError, match="use normax.presets.scion_cnn"):
    normax.presets.scion_mlp(roles=infer(ENTRIES["resnet"]))


def test_label_table_shows_views_and_what_decided_them():
  entry = ENTRIES["fused_qkv"]
  labels, specs = normax.presets.scion_gpt(roles=infer(entry))
  table = normax.label_table(entry.params, labels, specs)
  row = next(line for line in table.splitlines() if line.startswith("qkv/kernel"))
  assert re.search(r"hidden\s+3 × \[32 × 96/3\]\s+dot_general \(contracts 0\)\s+spectral", row)
  row = next(line for line in table.splitlines() if line.startswith("qkv2/kernel"))
  assert "3 × [32 × (4·8)]" in row


# -- the jitted step is unchanged ----------------------------------------------------------------


def test_inferred_roles_add_nothing_to_the_compiled_step():
  # The same optimizer with the same views stated by hand (rules) lowers to the same HLO.
  entry = ENTRIES["mha_decoder"]
  roles = infer(entry)
  labels, specs = normax.presets.scion_gpt(roles=roles)
  rules = [
    normax.Rule(re.compile(re.escape(path)), labels.label_of(role), view=role.view)
    for path, role in roles.items()
  ]
  by_hand = normax.label_by_path(rules)
  params = nnx.to_pure_dict(entry.params)
  grads = jax.tree.map(jnp.ones_like, params)

  def hlo(tx):
    state = tx.init(params)
    return jax.jit(tx.update).lower(grads, state, params).as_text(debug_info=False)

  assert hlo(normax.scion(0.01, specs, labels)) == hlo(normax.scion(0.01, specs, by_hand))


def test_gpt2_style_tables_and_indexed_stacks():
  # A position table sliced to the sequence and added (GPT-2's wpe), a stack indexed w[i] in a
  # Python loop, and a token table tied to the head through Embed.attend.
  class Gpt2ish(nnx.Module):
    def __init__(self, rngs):
      self.wte = nnx.Embed(50, 16, rngs=rngs)
      self.wpe = nnx.Param(jnp.zeros((32, 16)))
      self.layers = nnx.Param(jnp.ones((3, 16, 16)))

    def __call__(self, tokens):
      x = self.wte(tokens) + self.wpe[: tokens.shape[1]][None]
      for i in range(3):
        x = jnp.tanh(x @ self.layers[i])
      return self.wte.attend(x)

  roles = normax.infer_roles(Gpt2ish(nnx.Rngs(0)), jnp.zeros((2, 8), jnp.int32))
  assert roles["wpe"].kind == "embed" and same_view(
    roles["wpe"].view, normax.MatrixView(0, 1), (32, 16)
  )
  assert roles["layers"].kind == "hidden"
  assert same_view(roles["layers"].view, normax.MatrixView(1, 2, (0,)), (3, 16, 16))
  assert roles["wte/embedding"].kind == "tied"
  assert same_view(roles["wte/embedding"].view, normax.MatrixView(1, 0), (50, 16))
