"""Label rules, spec resolution, the label table and the presets."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import normax


def tree():
  return {
    "embed": {"embedding": jnp.zeros((10, 4))},
    "layers": [
      {"mlp": {"kernel": jnp.zeros((4, 8)), "bias": jnp.zeros(8)}},
      {"mlp": {"kernel": jnp.zeros((8, 4)), "bias": jnp.zeros(4)}},
    ],
    "head": {"kernel": jnp.zeros((4, 10))},
  }


def leaves_by_path(labels_tree):
  flat = jax.tree_util.tree_flatten_with_path(labels_tree)[0]
  return {normax.path_to_str(p): lab for p, lab in flat}


# -- rules ---------------------------------------------------------------------


def test_first_matching_rule_wins_and_order_matters():
  a = normax.label_by_path([("head/*", "head"), ("*kernel", "hidden"), ("*", "other")])
  b = normax.label_by_path([("*kernel", "hidden"), ("head/*", "head"), ("*", "other")])
  assert leaves_by_path(a(tree())) == {
    "embed/embedding": "other",
    "layers/0/mlp/kernel": "hidden",
    "layers/0/mlp/bias": "other",
    "layers/1/mlp/kernel": "hidden",
    "layers/1/mlp/bias": "other",
    "head/kernel": "head",
  }
  assert b(tree())["head"]["kernel"] == "hidden"


def test_labels_have_the_params_structure():
  labels = normax.label_by_path([("*", "x")])(tree())
  assert jax.tree.structure(labels) == jax.tree.structure(tree())
  assert set(jax.tree.leaves(labels)) == {"x"}


def test_mapping_rules_keep_insertion_order():
  labels = normax.label_by_path({"head/*": "head", "*": "rest"})
  assert labels(tree())["head"]["kernel"] == "head"
  assert labels(tree())["embed"]["embedding"] == "rest"


def test_globs_match_whole_path_components_from_the_end():
  assert normax.Rule("*kernel", "k").matches("a/b/c/kernel", (2, 2))
  assert normax.Rule("kernel", "k").matches("a/kernel", (2, 2))  # the last component
  assert not normax.Rule("/kernel", "k").matches("a/kernel", (2, 2))  # "/" anchors at the root
  assert normax.Rule("/a/*", "k").matches("a/kernel", (2, 2))
  assert not normax.Rule("*head/*", "h").matches("MultiHeadDotProductAttention_0/query/kernel", ())
  assert normax.Rule("layers/?/mlp/*", "m").matches("layers/1/mlp/bias", (4,))
  assert not normax.Rule("layers/?/mlp/*", "m").matches("layers/12/mlp/bias", (4,))
  assert not normax.Rule("Kernel", "k").matches("a/kernel", ())  # case-sensitive
  # A component pattern never matches part of a component (the over-matches of substring globs).
  assert not normax.Rule("head/*", "h").matches("blocks/0/multihead/kernel", (4, 4))
  assert normax.Rule("head/*", "h").matches("model/head/kernel", (4, 4))
  assert not normax.Rule("logits/*", "h").matches("pre_logits/kernel", (4, 4))
  assert not normax.Rule("embed/embedding", "e").matches("pos_embed/embedding", (4, 4))
  # ** spans whole components, any number of them (none included).
  assert normax.Rule("/encoder/**/kernel", "k").matches("encoder/a/b/kernel", ())
  assert normax.Rule("/encoder/**/kernel", "k").matches("encoder/kernel", ())
  assert not normax.Rule("/encoder/**/kernel", "k").matches("decoder/a/kernel", ())
  # A final "/*" is everything below the module.
  assert normax.Rule("layers/0/*", "k").matches("net/layers/0/mlp/kernel", ())
  assert not normax.Rule("layers/0/*", "k").matches("layers/0", ())


def test_regex_rules_use_fullmatch():
  rule = normax.Rule(re.compile(r"layers/\d+/mlp/kernel"), "hidden")
  assert rule.matches("layers/12/mlp/kernel", (4, 4))
  assert not rule.matches("x/layers/12/mlp/kernel", (4, 4))
  assert not rule.matches("layers/12/mlp/kernel_2", (4, 4))
  labels = normax.label_by_path([(re.compile(r".*/\d+/.*"), "layer"), ("*", "rest")])
  out = leaves_by_path(labels(tree()))
  assert out["layers/0/mlp/bias"] == "layer" and out["head/kernel"] == "rest"


@pytest.mark.parametrize(
  ("ndim", "shape", "expected"),
  [
    (2, (3, 4), True),
    (2, (2, 3, 4), False),
    ((3, 4, 5), (3, 3, 2, 4), True),
    ((3, 4, 5), (3, 4), False),
    (range(2, 64), (7, 3, 4), True),
    (range(2, 64), (4,), False),
    ([0, 1], (), True),
  ],
)
def test_rank_conditions(ndim, shape, expected):
  assert normax.Rule("*", "x", ndim=ndim).matches("w", shape) is expected


def test_min_ndim_is_a_lower_bound_on_the_rank():
  rule = normax.Rule("*", "x", min_ndim=2)
  assert rule.matches("w", (3, 4)) and rule.matches("w", (7, 3, 4))
  assert not rule.matches("w", (4,)) and not rule.matches("w", ())
  both = normax.Rule("*", "x", ndim=(1, 2, 3), min_ndim=2)  # Both conditions hold.
  assert [both.matches("w", (2,) * k) for k in range(5)] == [False, False, True, True, False]
  assert rule.describe() == "'*' [ndim>=2] -> 'x'"
  with pytest.raises(ValueError, match="normax.Rule min_ndim must be an integer >= 0, got -1"):
    normax.Rule("*", "x", min_ndim=-1)


def test_where_predicate_sees_the_shape():
  rule = normax.Rule("*", "vocab", where=lambda s: s[0] == 10)
  labels = normax.label_by_path([rule, ("*", "rest")])
  out = leaves_by_path(labels(tree()))
  assert out["embed/embedding"] == "vocab" and out["head/kernel"] == "rest"


def test_scalars_and_python_floats_get_labels():
  labels = normax.label_by_path([normax.Rule("*", "scalar", ndim=0), ("*", "rest")])
  assert labels({"a": 1.0, "b": jnp.zeros(()), "c": jnp.zeros(3)}) == {
    "a": "scalar",
    "b": "scalar",
    "c": "rest",
  }


def test_default_labels_the_rest():
  labels = normax.label_by_path([("*kernel", "hidden")], default="other")
  out = leaves_by_path(labels(tree()))
  assert out["embed/embedding"] == "other" and out["layers/0/mlp/kernel"] == "hidden"


def test_unmatched_error_lists_every_path_with_shape_and_suggests_rules():
  labels = normax.label_by_path([("*kernel", "hidden")])
  with pytest.raises(ValueError) as info:
    labels(tree())
  msg = str(info.value)
  assert msg.startswith("3 parameter(s) match no label rule")
  for path, shape in [
    ("embed/embedding", "(10, 4)"),
    ("layers/0/mlp/bias", "(8,)"),
    ("layers/1/mlp/bias", "(4,)"),
  ]:
    line = next(line for line in msg.splitlines() if line.strip().startswith(path))
    assert shape in line and "float32" in line
  assert "'*kernel' -> 'hidden'" in msg
  assert '("embedding", "<label>")' in msg and '("bias", "<label>")' in msg
  assert "default=" in msg


def test_required_label_must_be_used():
  labels = normax.label_by_path([("lm_head/*", "head"), ("*", "hidden")], required=("head",))
  with pytest.raises(ValueError, match=r"No parameter got the label\(s\) \['head'\]") as info:
    labels(tree())
  lines = str(info.value).splitlines()
  assert next(line for line in lines if "head/kernel" in line).split() == [
    "head/kernel",
    "(4,",
    "10)",
    "hidden",
  ]


def test_bad_rules_are_rejected_early():
  with pytest.raises(TypeError, match="sequence of rules"):
    normax.label_by_path("*kernel")
  with pytest.raises(TypeError, match=r"\(pattern, label\) pair"):
    normax.label_by_path([("*", "a", "b")])
  with pytest.raises(TypeError, match="glob string or a compiled re.Pattern"):
    normax.Rule(3, "x")
  with pytest.raises(TypeError, match="ndim"):
    normax.Rule("*", "x", ndim="2")


def test_label_fn_is_hashable_and_comparable():
  a = normax.label_by_path(
    [
      (
        "*",
        "x",
      )
    ],
    default="y",
  )
  b = normax.label_by_path([normax.Rule("*", "x")], default="y")
  assert a == b and hash(a) == hash(b)


def test_labels_depend_only_on_shapes():
  labels = normax.label_by_path([normax.Rule("*", "matrix", ndim=2), ("*", "vector")])
  abstract = jax.eval_shape(tree)
  assert labels(abstract) == labels(tree())
  traced = jax.jit(lambda p: jax.tree.map(lambda lab, x: x + len(lab), labels(p), p))(tree())
  assert float(traced["head"]["kernel"][0, 0]) == len("matrix")


def test_labels_drive_optax_partition():
  labels = normax.label_by_path([normax.Rule("*", "matrix", ndim=2), ("*", "vector")])
  tx = optax.partition({"matrix": optax.sgd(1.0), "vector": optax.set_to_zero()}, labels)
  params = tree()
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  assert float(updates["head"]["kernel"][0, 0]) == -1.0
  assert float(updates["layers"][0]["mlp"]["bias"][0]) == 0.0


# -- resolve_specs ---------------------------------------------------------------


SPECS = {
  "embed": normax.LayerSpec("colnorm", radius=1.0),
  "hidden": normax.LayerSpec("spectral", radius=3.0),
  "bias": normax.LayerSpec("bias_rms", radius=0.5, decay=0.0),
  "head": normax.LayerSpec("sign", radius=10.0),
}
RULES = normax.label_by_path(
  [("*embedding", "embed"), ("head/*", "head"), ("*bias", "bias"), ("*kernel", "hidden")]
)


def test_resolve_specs_gives_each_leaf_its_spec():
  out = normax.resolve_specs(tree(), RULES, SPECS)
  assert jax.tree.structure(out, is_leaf=lambda x: isinstance(x, normax.LayerSpec)) == (
    jax.tree.structure(tree())
  )
  assert out["head"]["kernel"] is SPECS["head"]
  assert out["layers"][1]["mlp"]["bias"] is SPECS["bias"]
  assert out["embed"]["embedding"].norm == normax.ColNorm()


def test_resolve_specs_accepts_prefix_label_trees_and_bare_norms():
  params = {"enc": {"w": jnp.zeros((4, 4)), "v": jnp.zeros((4, 2))}, "b": jnp.zeros(3)}
  out = normax.resolve_specs(
    params, {"enc": "m", "b": "v"}, {"m": "spectral", "v": normax.BiasRMS()}
  )
  assert out["enc"]["w"] == normax.LayerSpec("spectral") == out["enc"]["v"]
  assert out["b"] == normax.LayerSpec(normax.BiasRMS())


def test_unknown_labels_are_named_with_their_paths():
  specs = {k: v for k, v in SPECS.items() if k not in ("bias", "head")}
  with pytest.raises(ValueError) as info:
    normax.resolve_specs(tree(), RULES, specs)
  msg = str(info.value)
  assert msg.startswith("Labels 'head', 'bias' have no entry in specs")
  assert "known labels: 'embed', 'hidden'" in msg
  assert "'bias': layers/0/mlp/bias (8,), layers/1/mlp/bias (4,)" in msg
  assert "'head': head/kernel (4, 10)" in msg
  assert "specs['head'] = normax.LayerSpec(" in msg


def test_norm_shape_errors_name_the_path():
  labels = normax.label_by_path([("*", "hidden")])
  with pytest.raises(ValueError, match=r"shape \(8,\) at 'layers/0/mlp/bias'"):
    normax.resolve_specs(tree(), labels, SPECS)
  with pytest.raises(TypeError, match="'steps'.*floating-point"):
    normax.resolve_specs({"steps": jnp.zeros((2, 2), jnp.int32)}, labels, SPECS)


def test_mismatched_label_tree_is_an_error():
  with pytest.raises(ValueError, match="structure of the params"):
    normax.resolve_specs(tree(), {"embed": "embed"}, SPECS)


def test_bad_spec_values():
  with pytest.raises(TypeError, match=r"specs\['hidden'\] is 3"):
    normax.resolve_specs({"w": jnp.zeros((2, 2))}, {"w": "hidden"}, {"hidden": 3})
  with pytest.raises(TypeError, match="mapping"):
    normax.resolve_specs({"w": jnp.zeros((2, 2))}, {"w": "hidden"}, ["hidden"])


# -- the table -----------------------------------------------------------------


def test_label_table():
  specs = {
    **SPECS,
    "embed": normax.LayerSpec(normax.Sign(normalized=False), radius=optax.linear_schedule(1, 0, 9)),
  }
  del specs["bias"]
  expected = """\
path                 shape    dtype    label   norm                    radius    decay
embed/embedding      (10, 4)  float32  embed   sign(normalized=False)  schedule  default
head/kernel          (4, 10)  float32  head    sign                    10        default
layers/0/mlp/bias    (8,)     float32  bias    <missing>
layers/0/mlp/kernel  (4, 8)   float32  hidden  spectral                3         default
layers/1/mlp/bias    (4,)     float32  bias    <missing>
layers/1/mlp/kernel  (8, 4)   float32  hidden  spectral                3         default"""
  assert normax.label_table(tree(), RULES, specs) == expected
  assert normax.label_table(tree(), RULES).splitlines()[1].split() == [
    "embed/embedding",
    "(10,",
    "4)",
    "float32",
    "embed",
  ]


def test_label_table_shows_decay_and_dtype():
  params = {"b": jnp.zeros(4, jnp.bfloat16)}
  table = normax.label_table(params, {"b": "bias"}, SPECS)
  assert table.splitlines()[1].split() == ["b", "(4,)", "bfloat16", "bias", "bias_rms", "0.5", "0"]


# -- Flax trees ----------------------------------------------------------------


class Block(nnx.Module):
  def __init__(self, rngs):
    self.norm = nnx.LayerNorm(8, rngs=rngs)
    self.mlp = nnx.Linear(8, 8, rngs=rngs)


class NnxModel(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(11, 8, rngs=rngs)
    self.conv = nnx.Conv(8, 8, kernel_size=(3,), rngs=rngs)
    self.blocks = nnx.List([Block(rngs) for _ in range(2)])
    self.final_norm = nnx.RMSNorm(8, rngs=rngs)
    self.lm_head = nnx.Linear(8, 11, use_bias=False, rngs=rngs)
    self.gain = nnx.Param(jnp.ones(()))


def nnx_params():
  return nnx.state(NnxModel(nnx.Rngs(0)), nnx.Param)


def gpt_with_conv():
  """scion_gpt has no conv role: the model's 1-D conv gets one (it is an error otherwise)."""
  labels, specs = normax.presets.scion_gpt(rules=[("*conv/kernel", "conv")])
  specs["conv"] = normax.LayerSpec(normax.SpectralConv(), radius=50.0)
  return labels, specs


def test_scion_gpt_refuses_to_guess_the_matrix_of_a_rank3_kernel():
  labels, _ = normax.presets.scion_gpt()
  with pytest.raises(ValueError, match=r"1 parameter\(s\) are ambiguous") as info:
    labels(nnx_params())
  message = str(info.value)
  assert "conv/kernel  (3, 8, 8)" in message and "conv/bias" not in message
  # Both fixes, as code: infer the roles, or state the view.
  assert "normax.presets.scion_gpt(roles=normax.infer_roles(model, example_batch))" in message
  assert "normax.MatrixView(fan_in=-3, fan_out=(-2, -1))" in message


def test_nnx_wrapped_and_pure_states_get_the_same_labels():
  labels, _ = gpt_with_conv()
  wrapped = nnx_params()
  pure = nnx.as_pure(wrapped)
  assert any(
    isinstance(x, nnx.Param)
    for x in jax.tree.leaves(wrapped, is_leaf=lambda x: isinstance(x, nnx.Param))
  )
  lw, lp = labels(wrapped), labels(pure)
  assert leaves_by_path(lw) == leaves_by_path(lp)
  # One label per parameter: the wrapper itself is labelled, nothing inside it.
  assert all(isinstance(x, str) for x in jax.tree.leaves(lw))
  assert len(jax.tree.leaves(lw)) == len(jax.tree.leaves(pure))
  assert leaves_by_path(lp) == {
    "embed/embedding": "embed",
    "conv/kernel": "conv",
    "conv/bias": "bias",
    "blocks/0/norm/scale": "bias",
    "blocks/0/norm/bias": "bias",
    "blocks/0/mlp/kernel": "hidden",
    "blocks/0/mlp/bias": "bias",
    "blocks/1/norm/scale": "bias",
    "blocks/1/norm/bias": "bias",
    "blocks/1/mlp/kernel": "hidden",
    "blocks/1/mlp/bias": "bias",
    "final_norm/scale": "bias",
    "lm_head/kernel": "head",
    "gain": "bias",
  }


def test_nnx_paths_drop_only_the_wrapper_value():
  class Attn(nnx.Module):
    def __init__(self, rngs):
      self.value = nnx.Linear(2, 2, rngs=rngs)

  labels = normax.label_by_path([("*", "x")])
  state = nnx.state(Attn(nnx.Rngs(0)), nnx.Param)
  assert set(leaves_by_path(labels(state))) == {"value/kernel", "value/bias"}
  table = normax.label_table(state, labels)
  assert "value/kernel" in table and "value/bias" in table


def test_nnx_tables_match_for_wrapped_and_pure():
  labels, specs = gpt_with_conv()
  wrapped = nnx_params()
  assert normax.label_table(wrapped, labels, specs) == normax.label_table(
    nnx.as_pure(wrapped), labels, specs
  )
  resolved = normax.resolve_specs(wrapped, labels, specs)
  assert isinstance(resolved["lm_head"]["kernel"], nnx.Param)
  assert resolved["lm_head"]["kernel"].get_value() is specs["head"]


def test_presets_on_nnx_image_model():
  class Cnn(nnx.Module):
    def __init__(self, rngs):
      self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
      self.conv3d = nnx.Conv(1, 4, kernel_size=(2, 2, 2), rngs=rngs)
      self.bn = nnx.BatchNorm(4, rngs=rngs)
      self.dense = nnx.Linear(16, 8, rngs=rngs)
      self.classifier = nnx.Linear(8, 10, rngs=rngs)

  state = nnx.state(Cnn(nnx.Rngs(0)), nnx.Param)
  labels, specs = normax.presets.scion_cnn()
  # A rank-5 kernel may be a 3-D conv or a stack of 2-D ones: an error until a rule says.
  with pytest.raises(ValueError, match=r"(?s)conv3d/kernel  \(2, 2, 2, 1, 4\).*ranks 3 and 5"):
    labels(state)
  labels, specs = normax.presets.scion_cnn(rules=[("conv3d/kernel", "conv")])
  assert leaves_by_path(labels(state)) == {
    "conv1/kernel": "conv",
    "conv1/bias": "bias",
    "conv3d/kernel": "conv",
    "conv3d/bias": "bias",
    "bn/scale": "bias",
    "bn/bias": "bias",
    "dense/kernel": "hidden",
    "dense/bias": "bias",
    "classifier/kernel": "head",
    "classifier/bias": "bias",
  }
  resolved = normax.resolve_specs(state, labels, specs)
  assert resolved["conv1"]["kernel"].get_value().norm == normax.SpectralConv()
  assert resolved["classifier"]["kernel"].get_value().radius == 128.0


def test_linen_param_dicts():
  class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(16)(x))
      x = nn.LayerNorm()(x)
      return nn.Dense(10)(x)

  variables = Mlp().init(jax.random.key(0), jnp.zeros((1, 8)))
  labels, specs = normax.presets.scion_mlp()
  missing = r"No parameter got the label\(s\) \['head', 'input'\]"
  with pytest.raises(ValueError, match=missing) as info:
    labels(variables)
  assert "1. 'head/*' [ndim=2] -> 'head'" in str(info.value)
  assert "params/Dense_1/kernel" in str(info.value)
  labels, specs = normax.presets.scion_mlp(head="params/Dense_1/*", input="params/Dense_0/*")
  assert leaves_by_path(labels(variables)) == {
    "params/Dense_0/kernel": "input",
    "params/Dense_0/bias": "bias",
    "params/LayerNorm_0/scale": "bias",
    "params/LayerNorm_0/bias": "bias",
    "params/Dense_1/kernel": "head",
    "params/Dense_1/bias": "bias",
  }
  normax.resolve_specs(variables, labels, specs)


def test_scanned_nnx_stack_needs_its_view_stated():
  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return Block(nnx.Rngs(key))

  class Stack(nnx.Module):
    def __init__(self, rngs):
      self.blocks = make(jax.random.split(rngs.params(), 3))
      self.head = nnx.Linear(8, 4, rngs=rngs)

  state = nnx.state(Stack(nnx.Rngs(0)), nnx.Param)
  labels, specs = normax.presets.scion_gpt()
  with pytest.raises(ValueError, match=r"(?s)blocks/mlp/kernel  \(3, 8, 8\).*infer_roles"):
    labels(state)
  stacked = normax.Rule("blocks/*", "hidden", min_ndim=3, view=normax.MatrixView(-2, -1))
  labels, specs = normax.presets.scion_gpt(rules=[stacked])
  out = leaves_by_path(labels(state))
  assert out["blocks/mlp/kernel"] == "hidden" and out["blocks/mlp/bias"] == "bias"
  assert out["blocks/norm/scale"] == "bias"
  spec = normax.resolve_specs(state, labels, specs)["blocks"]["mlp"]["kernel"].get_value()
  assert spec.norm == normax.Spectral() and spec.view == normax.MatrixView(-2, -1)
  assert "blocks/mlp/kernel  (3, 8, 8)  float32  hidden  3 × [8 × 8]" in normax.label_table(
    state, labels, specs
  )


def test_scanned_conv_stack_needs_spatial_dims():
  params = {
    "convs": {"kernel": jnp.zeros((4, 3, 3, 8, 8)), "bias": jnp.zeros((4, 8))},
    "head": {"kernel": jnp.zeros((8, 10))},
  }
  labels, specs = normax.presets.scion_cnn(spatial_dims=2)
  assert labels(params) == {"convs": {"kernel": "conv", "bias": "bias"}, "head": {"kernel": "head"}}
  assert specs["conv"].norm == normax.SpectralConv(spatial_dims=2)
  normax.resolve_specs(params, labels, specs)
  # Without it, the rank-5 stack (one 3-D conv?) is an error; so is a rank-3 dense stack.
  labels, _ = normax.presets.scion_cnn()
  params["dense"] = {"kernel": jnp.zeros((4, 8, 8))}
  with pytest.raises(ValueError, match="2 parameter") as info:
    labels(params)
  assert "convs/kernel  (4, 3, 3, 8, 8)" in str(info.value)
  assert "dense/kernel  (4, 8, 8)" in str(info.value) and "spatial_dims" in str(info.value)
  # A rank-3 conv-named kernel where spatial_dims=2 is not a conv: an error, not a dense stack.
  labels, specs = normax.presets.scion_cnn(spatial_dims=2)
  del params["dense"]
  params["conv1d"] = {"kernel": jnp.zeros((3, 8, 8))}
  with pytest.raises(ValueError, match=r"conv1d/kernel  \(3, 8, 8\)"):
    labels(params)


def test_presets_user_rules_come_first_and_specs_are_editable():
  labels, specs = normax.presets.scion_gpt(
    rules=[("layers/0/*", "frozen")], embed_norm="sign_unnormalized", radius=2.0
  )
  specs["frozen"] = normax.LayerSpec("frobenius", radius=0.0)
  out = leaves_by_path(labels(tree()))
  assert out["layers/0/mlp/kernel"] == "frozen" and out["layers/1/mlp/kernel"] == "hidden"
  assert specs["embed"].norm == normax.Sign(normalized=False)
  assert specs["hidden"].radius == 2.0 and specs["bias"].radius == 1.0  # Gains keep theirs.
  normax.resolve_specs(tree(), labels, specs)


# -- labels that cannot silently mis-route (round two) ---------------------------------


def test_a_plain_label_function_under_inject_hyperparams_is_an_error_not_one_label():
  params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  specs = {"hidden": normax.LayerSpec("spectral"), "bias": normax.LayerSpec("bias_rms")}

  def plain(p):  # inject_hyperparams takes it for a schedule and calls it with the step count.
    return jax.tree.map(lambda x: "hidden" if jnp.ndim(x) == 2 else "bias", p)

  tx = optax.inject_hyperparams(normax.scion)(0.1, specs, plain)
  with pytest.raises(TypeError, match=r"single label 'bias'.*static_args=\('labels',\)"):
    tx.init(params)
  # The fixes named in the message work, and route as the uninjected optimizer does.
  by_path = normax.label_by_path([normax.Rule("*", "hidden", ndim=2)], default="bias")
  grads = {"w": jnp.eye(4) + 0.5, "b": jnp.arange(4.0)}
  ref = normax.scion(0.1, specs, plain)
  want, _ = ref.update(grads, ref.init(params), params)
  for tx in (
    optax.inject_hyperparams(normax.scion, static_args=("labels",))(0.1, specs, plain),
    optax.inject_hyperparams(normax.scion)(0.1, specs, by_path),
  ):
    got, _ = tx.update(grads, tx.init(params), params)
    for key in ("w", "b"):
      assert jnp.allclose(got[key], want[key], atol=1e-6), key
  # normax.muon too; one label for everything is fine where it is the only one configured.
  with pytest.raises(TypeError, match="single label"):
    optax.inject_hyperparams(normax.muon)(0.1, labels=lambda p: "muon").init(params)
  normax.scion(0.1, {"h": normax.LayerSpec("frobenius")}, "h").init(params)


def test_a_misspelt_spec_key_is_an_error():
  params = {"w": jnp.ones((4, 4)), "head": {"kernel": jnp.ones((4, 2))}}
  labels = normax.label_by_path([("head/*", "head"), ("*", "hidden")])
  specs = {"hidden": normax.LayerSpec("spectral"), "head": normax.LayerSpec("sign")}
  specs["haed"] = normax.LayerSpec("sign", radius=100.0)  # Meant to change the head's radius.
  tx = normax.scion(0.1, specs, labels)
  with pytest.raises(ValueError, match=r"entry 'haed' that no parameter carries.*'head'"):
    tx.init(params)
  with pytest.raises(ValueError, match="'haed'"):
    normax.resolve_specs(params, labels, specs)
  # A spare entry that is not close to a used label stays allowed (a preset's unused role).
  del specs["haed"]
  specs["embed"] = normax.LayerSpec("colnorm")
  normax.scion(0.1, specs, labels).init(params)


def test_a_label_function_that_reads_values_is_an_error():
  params = {"w": jnp.ones((4, 4)), "v": -jnp.ones((4, 4))}
  specs = {"pos": normax.LayerSpec("spectral"), "neg": normax.LayerSpec("sign")}

  def by_sign(p):  # Routes by the values: eagerly by the gradients' signs.
    return jax.tree.map(lambda x: "pos" if float(x.sum()) > 0 else "neg", p)

  tx = normax.scion(0.1, specs, by_sign)
  with pytest.raises(ValueError, match="depend on paths and shapes only"):
    tx.init(params)
