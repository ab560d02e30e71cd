"""Flax integration: nnx.Optimizer, Linen param dicts, scanned stacks, checkpoints."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import normax

VOCAB, WIDTH = 12, 16
TOKENS = jnp.arange(2 * VOCAB) % VOCAB
TARGETS = (3 * TOKENS + 1) % VOCAB


class Block(nnx.Module):
  def __init__(self, rngs):
    self.norm = nnx.RMSNorm(WIDTH, rngs=rngs)
    self.mlp = nnx.Linear(WIDTH, WIDTH, rngs=rngs)

  def __call__(self, x):
    return x + self.mlp(self.norm(x))


class ListGpt(nnx.Module):
  """A token model whose blocks live in an ``nnx.List``."""

  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCAB, WIDTH, rngs=rngs)
    self.blocks = nnx.List([Block(rngs) for _ in range(2)])
    self.final_norm = nnx.LayerNorm(WIDTH, rngs=rngs)
    self.lm_head = nnx.Linear(WIDTH, VOCAB, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x)
    return self.lm_head(self.final_norm(x))


class ScanGpt(nnx.Module):
  """The same model with its blocks stacked by ``nnx.vmap`` and run by ``nnx.scan``."""

  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCAB, WIDTH, rngs=rngs)

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(key):
      return Block(nnx.Rngs(key))

    self.blocks = make(jax.random.split(rngs.params(), 3))
    self.lm_head = nnx.Linear(WIDTH, VOCAB, rngs=rngs)

  def __call__(self, tokens):
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def body(x, block):
      return block(x)

    return self.lm_head(body(self.embed(tokens), self.blocks))


def nnx_loss(model):
  logits = model(TOKENS)
  return optax.softmax_cross_entropy_with_integer_labels(logits, TARGETS).mean()


@nnx.jit
def nnx_step(model, optimizer):
  loss, grads = nnx.value_and_grad(nnx_loss)(model)
  optimizer.update(model, grads)
  return loss


def train(model, optimizer, steps):
  return [float(nnx_step(model, optimizer)) for _ in range(steps)]


def scion_gpt_optimizer(model):
  # The preset's radii with the learning rate they were tuned with; roles read from the model.
  labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(model, TOKENS))
  return nnx.Optimizer(model, normax.scion(2**-6, specs, labels), wrt=nnx.Param)


@pytest.mark.parametrize("model_cls", [ListGpt, ScanGpt])
def test_nnx_models_train_with_scion_presets(model_cls):
  model = model_cls(nnx.Rngs(0))
  optimizer = scion_gpt_optimizer(model)
  losses = train(model, optimizer, 30)
  assert losses[-1] < 0.1 * losses[0], losses
  # Every parameter moved, each under the norm its label chose.
  state = nnx.state(model, nnx.Param)
  fresh = nnx.state(model_cls(nnx.Rngs(0)), nnx.Param)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, fresh)
  assert all(jax.tree.leaves(moved))


def test_scanned_stack_is_one_batched_parameter_per_role():
  model = ScanGpt(nnx.Rngs(0))
  labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(model, TOKENS))
  table = normax.label_table(nnx.state(model, nnx.Param), labels, specs).splitlines()
  rows = {line.split()[0]: line for line in table[1:]}
  # One row per stacked parameter: the scan's axis is a stack of 3 matrices of 16 × 16.
  assert rows["blocks/mlp/kernel"].split()[1:6] == ["(3,", "16,", "16)", "float32", "hidden"]
  assert "3 × [16 × 16]" in rows["blocks/mlp/kernel"]
  assert rows["blocks/mlp/kernel"].split()[-3:] == ["spectral", "10", "default"]
  assert rows["blocks/norm/scale"].split()[4] == "bias"


def test_constrained_scion_keeps_hidden_layers_in_their_ball():
  # SCG with γ ≤ 1 keeps each layer inside ‖x‖ ≤ ρ once it is inside.
  model = ListGpt(nnx.Rngs(0))
  labels, specs = normax.presets.scion_gpt(radius=1.0, head_radius=10.0)
  for block in model.blocks:
    block.mlp.kernel[...] = normax.Spectral(method="svd").init(jax.random.key(1), (WIDTH, WIDTH))
  optimizer = nnx.Optimizer(model, normax.scion(0.1, specs, labels), wrt=nnx.Param)
  train(model, optimizer, 10)
  for block in model.blocks:
    assert float(normax.Spectral().norm(block.mlp.kernel[...])) <= 1.0 + 1e-4


class LinenMlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(32)(x)
    x = nn.LayerNorm()(jnp.sqrt(2.0) * nn.relu(x))
    return nn.Dense(10)(x)


def test_linen_param_dict_trains_with_scion():
  key_x, key_w, key_init = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(key_x, (64, 20))
  y = jnp.argmax(x @ jax.random.normal(key_w, (20, 10)), axis=-1)
  model = LinenMlp()
  params = model.init(key_init, x)["params"]
  # Scion's MLP configuration (radius 1, head radius 2**10, lr 2**-6); the
  # head is Linen's unnamed last layer.
  labels, specs = normax.presets.scion_mlp(head="Dense_1/*", input="Dense_0/*")
  tx = normax.scion(2**-6, specs, labels)
  opt_state = tx.init(params)

  def loss_fn(params):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(40):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses
  assert normax.label_table(params, labels, specs).splitlines()[1].split()[:5] == [
    "Dense_0/bias",
    "(32,)",
    "float32",
    "bias",
    "bias_rms",
  ]


# -- the MaskedNode trap -------------------------------------------------------


def wrapped_masked_nodes(tree):
  """Paths of ``nnx.Variable``\\ s that wrap an ``optax.MaskedNode``.

  ``optax.partition``/``optax.masked`` replace masked-out leaves by
  ``MaskedNode``; when they do it *inside* the ``nnx.Param`` wrappers that
  ``nnx.Optimizer`` passes to ``init``, the state holds ``Param(MaskedNode)``,
  which older Flax (google/flax#4901) could not turn into optimizer state —
  the break reported for ``optax.contrib.muon``.
  """
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return [
    normax.path_to_str(path)
    for path, leaf in flat[0]
    if isinstance(leaf, nnx.Variable) and isinstance(leaf.get_value(), optax.MaskedNode)
  ]


class IssueModel(nnx.Module):
  """The model of google/flax#4901: a single vector parameter."""

  def __init__(self):
    self.a = nnx.Param(jnp.array([1.0]))

  def __call__(self):
    return self.a.sum()


class Mixed(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(4, 8, rngs=rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)
    self.gain = nnx.Param(jnp.ones(3))

  def __call__(self):
    x = jnp.ones((2, 4))
    return jnp.sum((self.head(jax.nn.relu(self.hidden(x))) * self.gain[...][None]) ** 2)


def test_the_detector_finds_a_param_wrapping_a_masked_node():
  # The trap built by hand (not through optax, whose behaviour may change): only the wrapped
  # MaskedNode is reported; a bare MaskedNode and a Param holding an array are fine.
  tree = {
    "a": {"w": nnx.Param(optax.MaskedNode()), "v": nnx.Param(jnp.ones(2))},
    "b": optax.MaskedNode(),
  }
  assert wrapped_masked_nodes(tree) == ["a/w"]


def every_label(label):
  return normax.label_by_path([("*", label)])


OPTIMIZERS = {
  "scion_issue": (
    IssueModel,
    lambda: normax.scion(0.1, {"bias": normax.LayerSpec("bias_rms")}, every_label("bias")),
  ),
  "scion_mixed": (
    lambda: Mixed(nnx.Rngs(0)),
    lambda: normax.scion(0.1, *reversed(normax.presets.scion_cnn(radius=1.0))),
  ),
  "muon_issue": (IssueModel, lambda: normax.muon(0.1)),
  "muon_mixed": (lambda: Mixed(nnx.Rngs(0)), lambda: normax.muon(0.1)),
  "muon_mixed_labels": (
    lambda: Mixed(nnx.Rngs(0)),
    lambda: normax.muon(
      0.1, labels=normax.label_by_path([normax.Rule("*", "muon", ndim=2)], default="adam")
    ),
  ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_normax_optimizers_work_inside_nnx_optimizer(name):
  make_model, make_tx = OPTIMIZERS[name]
  model, tx = make_model(), make_tx()
  assert wrapped_masked_nodes(tx.init(nnx.state(model, nnx.Param))) == []
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))

  @nnx.jit
  def step(model, optimizer):
    optimizer.update(model, nnx.grad(lambda m: m())(model))

  for _ in range(3):
    step(model, optimizer)
  assert int(optimizer.step[...]) == 3
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), nnx.state(model, nnx.Param), before)
  assert all(jax.tree.leaves(moved))


# -- checkpoints ---------------------------------------------------------------


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16])
def test_optimizer_state_round_trips_through_orbax(tmp_path, mu_dtype):
  def make():
    model = ScanGpt(nnx.Rngs(0))
    labels, specs = normax.presets.scion_gpt(roles=normax.infer_roles(model, TOKENS))
    tx = normax.scion(2**-12, specs, labels, nesterov=True, mu_dtype=mu_dtype)
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  model, optimizer = make()
  train(model, optimizer, 3)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "model", nnx.state(model))
  checkpointer.save(tmp_path / "optimizer", nnx.state(optimizer))
  checkpointer.wait_until_finished()

  restored_model, restored_optimizer = make()
  abstract = nnx.state(restored_optimizer)
  nnx.update(restored_model, checkpointer.restore(tmp_path / "model", nnx.state(restored_model)))
  nnx.update(restored_optimizer, checkpointer.restore(tmp_path / "optimizer", abstract))
  assert_trees_equal(nnx.state(restored_optimizer), nnx.state(optimizer))
  assert_trees_equal(nnx.state(restored_model), nnx.state(model))
  if mu_dtype is not None:
    mu = jax.tree.leaves(nnx.state(restored_optimizer, nnx.OptState))
    assert any(leaf.dtype == jnp.bfloat16 for leaf in mu)

  # Training goes on identically from the original and the restored copy.
  assert train(model, optimizer, 4) == train(restored_model, restored_optimizer, 4)
  assert_trees_equal(nnx.state(restored_model), nnx.state(model))
  assert_trees_equal(nnx.state(restored_optimizer), nnx.state(optimizer))
