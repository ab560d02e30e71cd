"""Sharded training across processes, run by tests/test_multiprocess.py.

Started either as one of two processes (``--process-id 0|1 --coordinator host:port``, 4 host
CPU devices each, gloo collectives between them, one 2 × 4 ``data × model`` mesh across both) or
as a single process with 8 host CPU devices. Both train the character GPT of
``examples/sharded_gpt.py`` (its sharding rules, optimizers and Orbax checkpoints) for a few
steps in every case of ``CASES`` and write, from process 0, an ``.npz`` of the losses, the first
step's update and the final parameters of each case, gathered to the host.

Then the checkpoints. The two processes train Muon on the 2-D layout, save parameters and
optimizer state at step ``SAVE`` with Orbax (each process writing its shards) and keep going to
``STEPS``. The single process restores that checkpoint on a different mesh (4 × 2, FSDP), checks
it bit for bit against the state the two processes gathered, trains on, and saves at
``SAVE + 1``; the two processes restore that one in turn. Each side also continues from the
other side's gathered state put on its devices by hand, without Orbax: the restored run must
continue exactly as that one does. The processes wait for each other's checkpoints through
marker files in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import sharded_gpt as sg  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

TEXT = (
  "to be, or not to be, that is the question:\n"
  "whether 'tis nobler in the mind to suffer\n"
  "the slings and arrows of outrageous fortune,\n"
) * 20
# (optimizer, layout, strategy): every layout and every strategy, with both optimizers. (That
# each optimizer gives the one-device update under every strategy and layout is
# tests/test_sharding.py's, in one process; here what is tested is crossing processes.)
CASES = (
  ("scion", "fsdp", "auto"),
  ("muon", "tp", "partition"),
  ("scion", "2d", "gather"),
  ("muon", "2d", "distribute"),
)
CASE_STEPS = 3  # Steps per case; the schedules run to STEPS (the checkpoint run's).
CHECKPOINT_CASE = ("muon", "2d", "distribute")  # Its programs are compiled by the cases.
SAVE, STEPS = 2, 5  # The two processes save at SAVE; the single process at SAVE + 1.
WAIT = 300.0  # Seconds to wait for the other side's checkpoint.


def config(optimizer: str, layout: str, strategy: str, steps: int) -> sg.Config:
  return sg.Config(
    optimizer=optimizer, layout=layout, ns_sharding=strategy, steps=steps, batch_size=8,
    block_size=16, n_embd=32, n_layer=1, n_head=4, out=None,
  )  # fmt: skip


def _index_key(index, shape) -> str:
  return ",".join(
    f"{sl.start or 0}:{n if sl.stop is None else sl.stop}"
    for sl, n in zip(index, shape, strict=True)
  )


def shards(results: dict, prefix: str, tree) -> None:
  """Stores this process's shards of every leaf under ``prefix`` (no communication, nothing
  to compile); :func:`assemble` puts the processes' shards back together."""
  for i, x in enumerate(jax.tree.leaves(tree)):
    results[f"{prefix}/{i}/shape"] = np.array(x.shape, dtype=np.int64)
    for shard in x.addressable_shards:
      results[f"{prefix}/{i}/@{_index_key(shard.index, x.shape)}"] = np.asarray(shard.data)


def assemble(files: list, prefix: str) -> list[np.ndarray]:
  """The leaves stored by :func:`shards` under ``prefix``, whole, from the processes' files."""
  leaves = {}
  for f in files:
    for key in f:
      if not key.startswith(prefix + "/") or key.endswith("/shape"):
        continue
      i, at = key[len(prefix) + 1 :].split("/@")
      i = int(i)
      if i not in leaves:
        leaves[i] = np.zeros(tuple(f[f"{prefix}/{i}/shape"]), f[key].dtype)
      index = tuple(slice(*map(int, part.split(":"))) for part in at.split(",") if part)
      leaves[i][index] = f[key]
  return [leaves[i] for i in range(len(leaves))]


class Trainer:
  """A run of ``sharded_gpt`` split into a gradient program (one per layout and mesh, shared by
  the optimizers) and an update program (one per case and mesh, shared by the runs of that
  case): fewer compilations than one fused step per run."""

  programs: dict = {}

  def __init__(self, cfg: sg.Config, data, mesh):
    self.run = r = sg.init(cfg, len(data.chars), mesh)
    self.cfg, self.data = cfg, data
    on = tuple(mesh.shape.items())
    if (cfg.layout, on) not in Trainer.programs:
      Trainer.programs[cfg.layout, on] = jax.jit(
        jax.value_and_grad(sg.loss_of(r.graphdef, r.rest)),
        in_shardings=(r.shardings, r.batch, r.batch),
        out_shardings=(None, r.shardings),
      )
    if (repr(cfg), on) not in Trainer.programs:
      tx = r.tx  # Built from cfg alone: the same update as every later run's of this case.

      def update(g, s, p):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

      Trainer.programs[repr(cfg), on] = jax.jit(
        update,
        in_shardings=(r.shardings, r.state_shardings, r.shardings),
        out_shardings=(r.shardings, r.state_shardings),
      )
    self.grad = Trainer.programs[cfg.layout, on]
    self.update = Trainer.programs[repr(cfg), on]

  def step(self, step: int) -> float:
    r = self.run
    x, y = sg.put(sg.batch_at(self.data, self.cfg, step), (r.batch, r.batch))
    with jax.set_mesh(r.mesh):
      loss, g = self.grad(r.params, x, y)
      r.params, r.state = self.update(g, r.state, r.params)
    return float(loss)

  def set_state(self, params: list, state: list) -> None:
    """Puts gathered host values on this run's devices (the route without Orbax)."""
    r = self.run
    r.params = sg.put(jax.tree.unflatten(jax.tree.structure(r.params), params), r.shardings)
    r.state = sg.put(jax.tree.unflatten(jax.tree.structure(r.state), state), r.state_shardings)


def cases(data, mesh, results: dict) -> None:
  for case in CASES:
    t = Trainer(config(*case, steps=STEPS), data, mesh)
    name = "/".join(case)
    shards(results, f"{name}/params0", t.run.params)
    losses = [t.step(1)]
    shards(results, f"{name}/params1", t.run.params)
    losses += [t.step(s) for s in range(2, CASE_STEPS + 1)]
    results[f"{name}/losses"] = np.array(losses)
    shards(results, f"{name}/final", t.run.params)


def wait_for(*paths: pathlib.Path) -> None:
  deadline = time.monotonic() + WAIT
  while not all(p.exists() for p in paths):
    if time.monotonic() > deadline:
      sys.exit(f"no {[str(p) for p in paths if not p.exists()]} after {WAIT:.0f} s")
    time.sleep(0.2)


def write(path: pathlib.Path, results: dict) -> None:
  """An ``.npz`` that appears whole (a reader waiting for it never sees half a file)."""
  partial = path.with_suffix(".partial.npz")
  np.savez(partial, **results)
  os.replace(partial, path)


def saved(files: list[pathlib.Path], prefix: str) -> tuple[list, list]:
  opened = [np.load(f) for f in files]
  try:
    return assemble(opened, f"{prefix}/params"), assemble(opened, f"{prefix}/state")
  finally:
    for f in opened:
      f.close()


def continue_from(trainer: Trainer, first: int, results: dict, prefix: str) -> None:
  losses = [trainer.step(s) for s in range(first + 1, STEPS + 1)]
  results[f"{prefix}/losses"] = np.array(losses)
  shards(results, f"{prefix}/final", trainer.run.params)


def multi_checkpoints(data, mesh, out: pathlib.Path, results: dict) -> None:
  pid = jax.process_index()
  cfg = config(*CHECKPOINT_CASE, steps=STEPS)
  t = Trainer(cfg, data, mesh)
  for s in range(1, SAVE + 1):
    t.step(s)
  sg.save(t.run, str(out / "ckpt_multi"), SAVE)
  mine = {}
  shards(mine, "multi_saved/params", t.run.params)
  shards(mine, "multi_saved/state", t.run.state)
  results.update(mine)
  write(out / f"multi_saved.{pid}.npz", mine)
  continue_from(t, SAVE, results, "multi_uninterrupted")
  # And back: the single process's checkpoint, saved on its own mesh, restored here.
  wait_for(out / "single_saved.npz")
  t = Trainer(cfg, data, mesh)
  step = sg.restore(t.run, str(out / "ckpt_single"))
  shards(results, "multi_restored/params", t.run.params)
  shards(results, "multi_restored/state", t.run.state)
  continue_from(t, step, results, "multi_restored")
  by_hand = Trainer(cfg, data, mesh)
  by_hand.set_state(*saved([out / "single_saved.npz"], "single_saved"))
  continue_from(by_hand, step, results, "multi_by_hand")


def single_checkpoints(data, out: pathlib.Path, results: dict) -> None:
  # A different mesh and layout from the two processes' 2 × 4 2-D layout.
  mesh = jax.make_mesh((4, 2), sg.AXES, axis_types=(AxisType.Auto,) * 2)
  cfg = config(CHECKPOINT_CASE[0], "fsdp", CHECKPOINT_CASE[2], steps=STEPS)
  theirs = [out / f"multi_saved.{i}.npz" for i in range(2)]
  wait_for(*theirs)
  t = Trainer(cfg, data, mesh)
  step = sg.restore(t.run, str(out / "ckpt_multi"))
  shards(results, "single_restored/params", t.run.params)
  shards(results, "single_restored/state", t.run.state)
  t.step(step + 1)
  sg.save(t.run, str(out / "ckpt_single"), step + 1)
  mine = {}
  shards(mine, "single_saved/params", t.run.params)
  shards(mine, "single_saved/state", t.run.state)
  results.update(mine)
  write(out / "single_saved.npz", mine)
  continue_from(t, step + 1, results, "single_restored")
  by_hand = Trainer(cfg, data, mesh)
  by_hand.set_state(*saved(theirs, "multi_saved"))
  by_hand.step(step + 1)
  continue_from(by_hand, step + 1, results, "single_by_hand")


def example_main(out: pathlib.Path, multi: bool, results: dict) -> None:
  """The example's own ``main``, as its documented two-process command runs it: 2 steps of
  Scion on the 2 × 4 mesh (2-D layout), saved at the end; the single process restores that
  checkpoint on its 4 × 2 mesh (FSDP) and trains a third step."""
  cfg = config("scion", "2d", "auto", steps=3)
  if multi:
    text = out / f"text.{jax.process_index()}.txt"
    text.write_text(TEXT)
    cfg.steps, cfg.mesh, cfg.text, cfg.eval_batches = 2, "data=2,model=4", str(text), 1
    cfg.checkpoint_dir = str(out / "example")
    r = sg.main(cfg)
    results["example/losses"] = np.array(r["losses"])
    results["example/eval"] = np.array(r["final_eval_loss"])
    if jax.process_index() == 0:
      (out / "example.done").touch()
  else:
    wait_for(out / "example.done")
    mesh = jax.make_mesh((4, 2), sg.AXES, axis_types=(AxisType.Auto,) * 2)
    cfg.layout = "fsdp"
    t = Trainer(cfg, sg.char_gpt.CharData(TEXT, 16), mesh)
    step = sg.restore(t.run, str(out / "example"))
    results["example/losses"] = np.array([t.step(step + 1)])
    results["example/step"] = np.array(step)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out", required=True)
  p.add_argument("--process-id", type=int, default=0)
  p.add_argument("--num-processes", type=int, default=1)
  p.add_argument("--coordinator", default=None)
  args = p.parse_args()
  multi = args.num_processes > 1
  sg.start(
    sg.Config(
      cpu_devices=8 // args.num_processes,
      coordinator=args.coordinator if multi else None,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  )
  if jax.device_count() != 8:
    sys.exit(f"need 8 devices in all, got {jax.device_count()}")
  out = pathlib.Path(args.out)
  data = sg.char_gpt.CharData(TEXT, 16)
  mesh = jax.make_mesh((2, 4), sg.AXES, axis_types=(AxisType.Auto,) * 2)
  if multi:  # The mesh spans both processes: each holds half of the "data" axis.
    assert {d.process_index for d in mesh.devices.flat} == {0, 1}
  results = {"processes": np.array(jax.process_count())}
  phases = {
    "cases": lambda: cases(data, mesh, results),
    "checkpoints": lambda: (
      multi_checkpoints(data, mesh, out, results)
      if multi
      else single_checkpoints(data, out, results)
    ),
    "example": lambda: example_main(out, multi, results),
  }
  for name, phase in phases.items():
    t0, c0 = time.perf_counter(), time.process_time()
    phase()
    results[f"seconds/{name}"] = np.array(time.perf_counter() - t0)
    results[f"cpu_seconds/{name}"] = np.array(time.process_time() - c0)
  name = f"multi.{jax.process_index()}" if multi else "single"
  write(out / f"{name}.npz", results)


if __name__ == "__main__":
  main()
