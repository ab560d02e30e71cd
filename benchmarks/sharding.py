"""Collectives and time of the spectral LMO update on sharded parameters, per strategy.

Three sections. The first two on a GPT-like tree of hidden matrices (per layer
four d×d attention matrices, a d×4d and a 4d×d MLP pair; as separate leaves,
or as a scanned stack) sharded over a device mesh:

* ``hlo``: compiles the jitted ``normax.scale_by_lmo(normax.Spectral(sharding=...))``
  update and counts the collectives of the compiled HLO (all-gather,
  all-reduce, all-to-all, reduce-scatter, collective-permute) and their bytes
  per device, inside the orthogonalization (ops under the named scope
  ``normax_orthogonalize``: the Newton–Schulz iteration and its Frobenius
  normalization) and outside it (the resharding around it), for every
  strategy on FSDP, tensor-parallel (row or column), 2-D and scanned layouts.
  Nothing is timed, so the table is the same on any machine.
* ``time``: the update's median time against the same update on one device.
* ``step``: a whole training step of ``examples/sharded_gpt.py``'s character
  GPT (forward, backward, update, one ``jax.jit``) on the ``data × model``
  mesh under its FSDP and 2-D layouts, with Scion and Muon under every
  strategy and with AdamW; the contestants are timed round-robin (one step
  each per round) and each one's time over AdamW's is the median of the
  per-round ratios.

Prints tables and writes JSON.

  python benchmarks/sharding.py                  # 8 host CPU devices, hlo and time
  python benchmarks/sharding.py --sections hlo   # collective counts only
  python benchmarks/sharding.py --sections step  # train step vs AdamW
  python benchmarks/sharding.py --devices 0      # whatever devices exist
  python benchmarks/sharding.py --processes 2 --sections hlo  # a mesh across 2 processes

``--processes N`` starts N processes on this machine, each with
``devices / N`` host CPU devices, joined by ``jax.distributed.initialize``
(gloo collectives) into one mesh; process 0 prints and writes.

``--devices N`` (N > 0) sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
before JAX starts, so N virtual CPU devices share this machine's cores: the
figures then show the cost of each strategy's collectives and its split of
the work, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time


def parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--devices", type=int, default=8, help="host CPU devices (0: as found)")
  p.add_argument("--width", type=int, nargs="+", default=[256, 512])
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--sections", default="hlo,time", help="comma-separated: hlo, time, step")
  p.add_argument("--processes", type=int, default=1, help="processes sharing the mesh")
  p.add_argument("--process-id", type=int, default=None, help=argparse.SUPPRESS)
  p.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
  p.add_argument("--step-width", type=int, default=128, help="d of the step section's GPT")
  p.add_argument("--step-depth", type=int, default=2)
  p.add_argument("--step-batch", type=int, default=32, help="sequences per step")
  p.add_argument("--step-block", type=int, default=64, help="characters per sequence")
  p.add_argument("--step-layouts", default="fsdp,2d")
  p.add_argument("--hlo-width", type=int, default=128, help="d of the hlo section's tree")
  p.add_argument("--hlo-depth", type=int, default=2)
  p.add_argument("--out", default="benchmarks/sharding.json")
  p.add_argument("--markdown", default=None, help="also write the hlo table here")
  return p.parse_args()


def launch(args) -> None:
  """Runs this script as ``args.processes`` processes on one mesh; returns when all are done."""
  import socket
  import subprocess

  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  argv = [a for a in sys.argv[1:]]
  procs = [
    subprocess.Popen(
      [sys.executable, sys.argv[0], *argv, "--process-id", str(i),
       "--coordinator", f"localhost:{port}"],
      stdout=None if i == 0 else subprocess.DEVNULL,
    )
    for i in range(args.processes)
  ]  # fmt: skip
  codes = [p.wait() for p in procs]
  if any(codes):
    sys.exit(f"processes exited with {codes}")


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.processes > 1 and ARGS.process_id is None:
  launch(ARGS)
  sys.exit(0)
if ARGS is not None and ARGS.devices > 0:
  if ARGS.devices % ARGS.processes:
    sys.exit(f"--devices {ARGS.devices} is not a multiple of --processes {ARGS.processes}")
  count = ARGS.devices // ARGS.processes
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

if ARGS is not None and ARGS.process_id is not None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(ARGS.coordinator, ARGS.processes, ARGS.process_id)

from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import normax  # noqa: E402

STRATEGIES = ("partition", "gather", "distribute")
HLO_STRATEGIES = ("auto", *STRATEGIES)
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "reduce-scatter", "collective-permute")
SCOPE = "normax_orthogonalize"  # normax's named scope around the orthogonalization.
_BYTES = {"f64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "pred": 1}
_LINE = re.compile(r"=\s*(?P<type>.*?)\s(?P<op>" + "|".join(COLLECTIVES) + r")(?P<start>-start)?\(")
_SHAPE = re.compile(r"\b(?P<dtype>[a-z]+[0-9]*)\[(?P<dims>[0-9,]*)\]")


def hlo_collectives(text: str) -> list[dict]:
  """The collectives of a compiled HLO module's text, one dict per instruction.

  ``op``: the collective's kind; ``bytes``: the size of its result on one
  device (HLO shapes are per device after partitioning; an async ``-start``
  counts its output half only, its ``-done`` not at all); ``inside``:
  whether its ``op_name`` metadata lies in normax's orthogonalization scope.
  """
  out = []
  for line in text.splitlines():
    m = _LINE.search(line)
    if m is None or "-done" in line.split("(")[0]:
      continue
    shapes = [
      _BYTES.get(s["dtype"], 4) * math_prod(int(d) for d in s["dims"].split(",") if d)
      for s in _SHAPE.finditer(m["type"])
    ]
    if m["start"] and m["op"] in ("all-gather", "collective-permute") and len(shapes) > 1:
      shapes = shapes[len(shapes) // 2 :]  # (operands, outputs) of the async form.
    name = re.search(r'op_name="([^"]*)"', line)
    out.append(
      {
        "op": m["op"],
        "bytes": sum(shapes),
        "inside": bool(name) and SCOPE in name.group(1),
      }
    )
  return out


def math_prod(values) -> int:
  p = 1
  for v in values:
    p *= v
  return p


def summarize(colls: list[dict]) -> dict:
  """Counts and bytes per kind, inside and outside the orthogonalization."""
  row = {}
  for where in ("inside", "outside"):
    sel = [c for c in colls if c["inside"] == (where == "inside")]
    row[f"{where}_count"] = len(sel)
    row[f"{where}_bytes"] = sum(c["bytes"] for c in sel)
    row[f"{where}_ops"] = {op: sum(c["op"] == op for c in sel) for op in COLLECTIVES}
  return row


def hlo_layout_specs(tree, layout: str, axes: tuple[str, ...]):
  """PartitionSpecs of the hlo section's layouts.

  ``fsdp``: each matrix's first axis over every device. ``tp_in``: the
  fan-in axis over "model" (row parallel). ``tp_out``: the fan-out axis over
  "model" (column parallel). ``2d``: Megatron (q, k, v, up column parallel,
  o, down row parallel) over "model" and FSDP over "data" on the other axis.
  A scanned stack's layer axis is not sharded.
  """
  if layout == "2d":
    return layout_specs(tree, "tp", axes)

  def spec(leaf):
    lead = (None,) * (leaf.ndim - 2)
    return P(
      *lead, *{"fsdp": (axes, None), "tp_in": ("model", None), "tp_out": (None, "model")}[layout]
    )

  return jax.tree.map(spec, tree)


def hlo_case(tree, specs, strategy: str, mesh) -> dict:
  """Compiles the sharded update once and summarizes its collectives.

  ``bytes / matrices``: collective bytes per device over the bytes of all
  the orthogonalized matrices (each matrix moved in and out once, and no
  more, gives at most 2).
  """
  tx = normax.scale_by_lmo(normax.Spectral(sharding=strategy))
  update = jax.jit(lambda g: tx.update(g, tx.init(g))[0])
  # Abstract arguments: nothing to put on devices (another process's included).
  x = jax.tree.map(
    lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, s)),
    tree,
    specs,
  )
  with jax.set_mesh(mesh):
    text = update.lower(x).compile().as_text()
  row = summarize(hlo_collectives(text))
  matrix_bytes = sum(v.size * v.dtype.itemsize for v in jax.tree.leaves(tree))
  row["matrix_bytes"] = matrix_bytes
  row["bytes / matrices"] = (row["inside_bytes"] + row["outside_bytes"]) / matrix_bytes
  return row


def hlo_rows(width: int, depth: int, mesh, strategies=HLO_STRATEGIES, layouts=None) -> list[dict]:
  """``hlo_case`` for each tree (list, scanned), layout and strategy."""
  axes = tuple(mesh.axis_names)
  rows = []
  for scanned in (False, True):
    tree = gpt_tree(width, depth, scanned)
    for layout in layouts or ("fsdp", "tp_in", "tp_out", "2d"):
      specs = hlo_layout_specs(tree, layout, axes)
      for strategy in strategies:
        row = {"width": width, "depth": depth, "tree": "scan" if scanned else "list"}
        row |= {"layout": layout, "strategy": strategy}
        rows.append(row | hlo_case(tree, specs, strategy, mesh))
  return rows


def moe_tree(width: int, depth: int, experts: int):
  """Expert weights of a mixture-of-experts decoder: a scanned stack ``(layers, experts, d, 4d)``
  and ``(layers, experts, 4d, d)``, and one unscanned block's ``(experts, d, 4d)``,
  ``(experts, 4d, d)``."""
  d, f = width, 4 * width
  k = jax.random.split(jax.random.key(1), 4)
  return {
    "blocks": {
      "w_in": jax.random.normal(k[0], (depth, experts, d, f)),
      "w_out": jax.random.normal(k[1], (depth, experts, f, d)),
    },
    "moe": {
      "w_in": jax.random.normal(k[2], (experts, d, f)),
      "w_out": jax.random.normal(k[3], (experts, f, d)),
    },
  }


def moe_hlo_rows(width: int, depth: int, strategies=HLO_STRATEGIES) -> list[dict]:
  """``hlo_case`` for expert weights on an ``expert × data`` mesh (2 on "data"): the expert
  axis over "expert" (``ep``), and also each expert's fan-in over "data" (``ep+fsdp``).

  ``bytes / experts`` is ``bytes / matrices``; ``own share`` is the fraction of them one
  device holds.
  """
  n = jax.device_count()
  mesh = jax.make_mesh((n // 2, 2), ("expert", "data"), axis_types=(AxisType.Explicit,) * 2)
  tree = moe_tree(width, depth, n // 2)
  rows = []
  for layout, inner in (("ep", None), ("ep+fsdp", "data")):

    def spec(leaf, inner=inner):
      lead = (None,) * (leaf.ndim - 3)
      return P(*lead, "expert", inner, None)

    specs = jax.tree.map(spec, tree)
    for strategy in strategies:
      row = {"width": width, "depth": depth, "experts": n // 2, "tree": "moe"}
      row |= {"layout": layout, "strategy": strategy, "own share": 1 / mesh.size}
      rows.append(row | hlo_case(tree, specs, strategy, mesh))
  return rows


def _ops(counts: dict) -> str:
  short = {"all-gather": "AG", "all-reduce": "AR", "all-to-all": "A2A"}
  short |= {"reduce-scatter": "RS", "collective-permute": "CP"}
  return " ".join(f"{n}{short[op]}" for op, n in counts.items() if n) or "—"


def hlo_markdown(rows: list[dict]) -> str:
  head = "| tree | layout | strategy | inside: collectives | inside KiB | outside: collectives"
  head += " | outside KiB | bytes / matrices |\n|---|---|---|---|---|---|---|---|\n"
  lines = [
    f"| {r['tree']} | {r['layout']} | {r['strategy']} | {_ops(r['inside_ops'])}"
    f" | {r['inside_bytes'] / 1024:.0f} | {_ops(r['outside_ops'])}"
    f" | {r['outside_bytes'] / 1024:.0f} | {r['bytes / matrices']:.2f} |"
    for r in rows
  ]
  return head + "\n".join(lines) + "\n"


def gpt_tree(width: int, depth: int, scanned: bool):
  """Hidden matrices of a GPT: per layer q, k, v, o (d×d), up (d×4d), down (4d×d)."""
  d = width
  shapes = {
    "q": (d, d),
    "k": (d, d),
    "v": (d, d),
    "o": (d, d),
    "up": (d, 4 * d),
    "down": (4 * d, d),
  }
  key = iter(jax.random.split(jax.random.key(0), 6 * depth))
  if scanned:
    return {n: jax.random.normal(next(key), (depth, *s)) for n, s in shapes.items()}
  return {
    f"layer{i}": {n: jax.random.normal(next(key), s) for n, s in shapes.items()}
    for i in range(depth)
  }


def layout_specs(tree, layout: str, axes: tuple[str, ...]):
  """FSDP: every matrix's first matrix axis over all devices. TP: Megatron
  (q, k, v, up column parallel, o, down row parallel) over "model", FSDP over
  "data" on the other axis."""

  def spec(path, leaf):
    name = path[-1].key
    lead = (None,) * (leaf.ndim - 2)
    if layout == "fsdp":
      return P(*lead, axes, None)
    if name in ("q", "k", "v", "up"):
      return P(*lead, "data", "model")
    return P(*lead, "model", "data")

  return jax.tree.map_with_path(spec, tree)


def timed(fn, x, repeats: int) -> tuple[float, float]:
  """Compile seconds and the median seconds per call."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(x))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    times.append(time.perf_counter() - t0)
  return compile_s, statistics.median(times)


STEP_CONTESTANTS = (("adamw", "—"),) + tuple(
  (opt, s) for opt in ("scion", "muon") for s in ("auto", "partition", "gather", "distribute")
)


def step_rows(args, shape) -> list[dict]:
  """Median train-step time of each contestant, and its per-round ratio to AdamW's."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
  import numpy as np
  import sharded_gpt as sg

  rng = np.random.default_rng(0)
  text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz ,.\n"), 200_000))
  data = sg.char_gpt.CharData(text, args.step_block)
  mesh = jax.make_mesh(shape, sg.AXES, axis_types=(AxisType.Auto,) * 2)
  rows = []
  for layout in args.step_layouts.split(","):
    runs, times = {}, {}
    for opt, strategy in STEP_CONTESTANTS:
      cfg = sg.Config(
        optimizer=opt, ns_sharding="auto" if strategy == "—" else strategy, layout=layout,
        steps=10_000, batch_size=args.step_batch, block_size=args.step_block,
        n_embd=args.step_width, n_layer=args.step_depth, out=None,
      )  # fmt: skip
      run = sg.build(cfg, len(data.chars), mesh)
      t0 = time.perf_counter()
      for step in (1, 2):  # compiles, then runs once more
        jax.block_until_ready(sg.train_step(run, *sg.batch_at(data, cfg, step)))
      runs[opt, strategy] = (run, cfg, time.perf_counter() - t0)
      times[opt, strategy] = []
    for r in range(args.repeats):
      for key, (run, cfg, _) in runs.items():
        x, y = sg.batch_at(data, cfg, 3 + r)
        t0 = time.perf_counter()
        jax.block_until_ready(sg.train_step(run, x, y))
        times[key].append(time.perf_counter() - t0)
    base = times["adamw", "—"]
    for (opt, strategy), ts in times.items():
      ratio = statistics.median(t / b for t, b in zip(ts, base, strict=True))
      rows.append(
        {
          "layout": layout, "optimizer": opt, "strategy": strategy,
          "ms": 1e3 * statistics.median(ts), "vs_adamw": ratio,
          "first_two_steps_s": runs[opt, strategy][2],
        }
      )  # fmt: skip
      if jax.process_index() == 0:
        print(
          f"{layout:5s} {opt:6s} {strategy:10s} {1e3 * statistics.median(ts):8.1f} ms"
          f"  x{ratio:5.2f} of adamw",
          flush=True,
        )
  return rows


def step_markdown(rows: list[dict]) -> str:
  head = "| layout | optimizer | strategy | step ms | × AdamW |\n|---|---|---|---|---|\n"
  lines = [
    f"| {r['layout']} | {r['optimizer']} | {r['strategy']} | {r['ms']:.1f} | {r['vs_adamw']:.2f} |"
    for r in rows
  ]
  return head + "\n".join(lines) + "\n"


def main(args):
  n = jax.device_count()
  shape = (2, n // 2) if n % 2 == 0 and n > 1 else (1, n)
  axes = ("data", "model")
  mesh = jax.make_mesh(shape, axes, axis_types=(AxisType.Explicit,) * 2)
  sections = args.sections.split(",")
  lead = jax.process_index() == 0
  if jax.process_count() > 1 and "time" in sections:
    sys.exit("--sections time runs in one process (it times a one-device baseline).")
  hlo = []
  if "hlo" in sections:
    hlo = hlo_rows(args.hlo_width, args.hlo_depth, mesh)
    hlo += moe_hlo_rows(args.hlo_width, args.hlo_depth)
    table = hlo_markdown(hlo)
    if lead:
      print(table, flush=True)
    if args.markdown and lead:
      with open(args.markdown, "w") as f:
        f.write(table)
  steps = step_rows(args, shape) if "step" in sections else []
  if steps and lead:
    print(step_markdown(steps), flush=True)
  rows = []
  for width in args.width if "time" in sections else ():
    for scanned in (False, True):
      tree = gpt_tree(width, args.depth, scanned)
      base = None
      for layout in ("one_device", "fsdp", "tp"):
        for strategy in STRATEGIES if layout != "one_device" else ("partition",):
          tx = normax.scale_by_lmo(normax.Spectral(sharding=strategy))
          update = jax.jit(lambda g, tx=tx: tx.update(g, tx.init(g))[0])
          if layout == "one_device":
            x = jax.device_put(tree, jax.devices()[0])
            compile_s, sec = timed(update, x, args.repeats)
            base = sec
          else:
            specs = layout_specs(tree, layout, axes)
            x = jax.tree.map(lambda v, s: jax.device_put(v, NamedSharding(mesh, s)), tree, specs)
            with jax.set_mesh(mesh):
              compile_s, sec = timed(update, x, args.repeats)
          row = {
            "width": width,
            "depth": args.depth,
            "scanned": scanned,
            "layout": layout,
            "strategy": strategy,
            "ms": 1e3 * sec,
            "compile_s": compile_s,
            "vs_one_device": sec / base,
          }
          rows.append(row)
          print(
            f"d={width:5d} {'scan' if scanned else 'tree':4s} {layout:10s} {strategy:10s}"
            f" {1e3 * sec:9.2f} ms  x{sec / base:5.2f} of one device"
            f"  (compile {compile_s:.1f} s)",
            flush=True,
          )
  if not lead:
    return
  result = {
    "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "processes": jax.process_count(),
      "mesh": dict(zip(axes, shape, strict=True)),
      "jax": jax.__version__,
      "load_average": os.getloadavg(),
    },
    "rows": rows,
    "hlo": hlo,
    "step": steps,
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main(ARGS)
