"""Time of the spectral LMO update on sharded parameters, per strategy.

Times ``normax.scale_by_lmo(normax.Spectral(sharding=...))`` (the jitted
update alone) on a GPT-like tree of hidden matrices (per layer four d×d
attention matrices, a d×4d and a 4d×d MLP pair; as separate leaves, or as a
scanned stack) sharded over a device mesh, against the same update on one
device. Prints a table and writes JSON.

  python benchmarks/sharding.py                  # 8 host CPU devices
  python benchmarks/sharding.py --devices 0      # whatever devices exist

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
import statistics
import sys
import time


def parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--devices", type=int, default=8, help="host CPU devices (0: as found)")
  p.add_argument("--width", type=int, nargs="+", default=[256, 512])
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--out", default="benchmarks/sharding.json")
  return p.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.devices > 0:
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import normax  # noqa: E402

STRATEGIES = ("partition", "gather", "distribute")


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


def main(args):
  n = jax.device_count()
  shape = (2, n // 2) if n % 2 == 0 and n > 1 else (1, n)
  axes = ("data", "model")
  mesh = jax.make_mesh(shape, axes, axis_types=(AxisType.Explicit,) * 2)
  rows = []
  for width in args.width:
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
  result = {
    "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "mesh": dict(zip(axes, shape, strict=True)),
      "jax": jax.__version__,
    },
    "rows": rows,
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main(ARGS)
