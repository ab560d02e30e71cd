"""What keeping constrained Scion inside its ball costs: ``Spectral(bounded=True)`` against
``bounded=False``.

Constrained Scion takes ``bounded=True`` for its Newton–Schulz layers (a final cubic step
``(3x − x³)/2`` that keeps every singular value of the step at most 1, see
``normax.newton_schulz``). Two timings, each a median over rounds in which the two variants
run in turn (ratios are the medians of the per-round ratios):

* ``dualize``: one jitted ``scale_by_lmo`` of a GPT layer's hidden matrices (q, k, v, o
  ``d×d``, MLP ``d×4d`` and ``4d×d``; same-shape matrices batched, as Scion does), for
  each width;
* ``update``: one jitted update of ``normax.scion`` with ``presets.scion_gpt`` on a
  GPT-like parameter tree (embedding, ``depth`` layers, head), the whole optimizer step.

Also the singular values the step reaches (``σ(dualize(G))/s``, ``s`` the dimension factor)
on each layer's random gradient: the range over the matrices, with and without the bound.

  python benchmarks/bounded.py --quick                 # tiny sizes, a smoke test
  python benchmarks/bounded.py --json benchmarks/results/cpu_bounded.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import normax  # noqa: E402

BOUNDS = {"unbounded": False, "bounded": True}


def round_robin(calls: dict, *, repeats: int, warmup: int) -> tuple[dict, float]:
  """Median time of each call (ms) and the median per-round ratio bounded/unbounded."""
  for _ in range(warmup):
    for fn, args in calls.values():
      jax.block_until_ready(fn(*args))
  rounds = []
  for _ in range(repeats):
    t = {}
    for name, (fn, args) in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      t[name] = time.perf_counter() - t0
    rounds.append(t)
  times = {name: 1e3 * statistics.median(r[name] for r in rounds) for name in calls}
  ratio = statistics.median(r["bounded"] / r["unbounded"] for r in rounds)
  return times, ratio


def layer_matrices(key, d: int) -> dict:
  shapes = {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "up": (d, 4 * d)}
  shapes["down"] = (4 * d, d)
  keys = jax.random.split(key, len(shapes))
  return {n: jax.random.normal(k, s) for (n, s), k in zip(shapes.items(), keys, strict=True)}


def step_band(norm: normax.Spectral, g: dict) -> tuple[float, float]:
  """The smallest and largest ``σ/s`` of the dualized matrices."""
  out = normax.scale_by_lmo(norm).update(g, None)[0]
  lo, hi = np.inf, 0.0
  for name, x in out.items():
    s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    s = s / norm.dimension_scale(*g[name].shape)
    lo, hi = min(lo, s.min()), max(hi, s.max())
  return float(lo), float(hi)


def bench_dualize(args) -> list[dict]:
  rows = []
  for d in args.widths:
    g = layer_matrices(jax.random.key(d), d)
    calls = {}
    for name, bounded in BOUNDS.items():
      tx = normax.scale_by_lmo(normax.Spectral(bounded=bounded))
      calls[name] = (jax.jit(lambda u, tx=tx: tx.update(u, None)[0]), (g,))
    times, ratio = round_robin(calls, repeats=args.repeats, warmup=args.warmup)
    bands = {name: step_band(normax.Spectral(bounded=b), g) for name, b in BOUNDS.items()}
    rows.append(
      {
        "width": d,
        "unbounded_ms": times["unbounded"],
        "bounded_ms": times["bounded"],
        "bounded/unbounded": ratio,
        "band_unbounded": bands["unbounded"],
        "band_bounded": bands["bounded"],
      }
    )
    print(rows[-1], flush=True)
  return rows


def gpt_params(key, vocab: int, d: int, depth: int) -> dict:
  keys = iter(jax.random.split(key, 6 * depth + 2))
  normal = lambda *shape: 0.02 * jax.random.normal(next(keys), shape)  # noqa: E731
  layers = [
    {
      "attn": {n: {"kernel": normal(d, d)} for n in ("query", "key", "value", "out")},
      "mlp": {"up": {"kernel": normal(d, 4 * d)}, "down": {"kernel": normal(4 * d, d)}},
      "norm": {"scale": jnp.ones(d)},
    }
    for _ in range(depth)
  ]
  return {
    "embed": {"embedding": normal(vocab, d)},
    "layers": layers,
    "lm_head": {"kernel": normal(d, vocab)},
  }


def bench_update(args) -> list[dict]:
  rows = []
  labels, specs = normax.presets.scion_gpt()
  for d in args.widths:
    params = gpt_params(jax.random.key(0), args.vocab, d, args.depth)
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), params)
    calls = {}
    for name, bounded in BOUNDS.items():
      # bounded=False is the opt-out; the default (None) is bounded=True in constrained Scion.
      own = {
        label: normax.LayerSpec(
          dataclasses.replace(spec.norm, bounded=bounded)
          if isinstance(spec.norm, normax.Spectral)
          else spec.norm,
          spec.radius,
          spec.decay,
        )
        for label, spec in specs.items()
      }
      tx = normax.scion(0.1, own, labels)
      state = tx.init(params)
      calls[name] = (jax.jit(tx.update), (grads, state, params))
    times, ratio = round_robin(calls, repeats=args.repeats, warmup=args.warmup)
    rows.append(
      {
        "width": d,
        "depth": args.depth,
        "vocab": args.vocab,
        "unbounded_ms": times["unbounded"],
        "bounded_ms": times["bounded"],
        "bounded/unbounded": ratio,
      }
    )
    print(rows[-1], flush=True)
  return rows


def markdown(out: dict) -> str:
  lines = [
    "| width | dualize, unbounded (ms) | bounded (ms) | ratio | σ/s unbounded | σ/s bounded |",
    "|---:|---:|---:|---:|---|---|",
  ]
  for r in out["dualize"]:
    lo, hi = r["band_unbounded"]
    blo, bhi = r["band_bounded"]
    lines.append(
      f"| {r['width']} | {r['unbounded_ms']:.2f} | {r['bounded_ms']:.2f} |"
      f" {r['bounded/unbounded']:.3f} | [{lo:.3f}, {hi:.3f}] | [{blo:.3f}, {bhi:.3f}] |"
    )
  lines += [
    "",
    "| width | scion update, unbounded (ms) | bounded (ms) | ratio |",
    "|---:|---:|---:|---:|",
  ]
  for r in out["update"]:
    lines.append(
      f"| {r['width']} | {r['unbounded_ms']:.2f} | {r['bounded_ms']:.2f} |"
      f" {r['bounded/unbounded']:.3f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--widths", type=int, nargs="+", default=None)
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--vocab", type=int, default=256)
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--quick", action="store_true", help="tiny sizes")
  p.add_argument("--json", type=Path, default=None, help="write the results here")
  args = p.parse_args(argv)
  if args.widths is None:
    args.widths = [16] if args.quick else [256, 512, 768]
  if args.quick:
    args.depth, args.vocab, args.repeats, args.warmup = 1, 24, 2, 1
  out = {
    "machine": {
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "versions": {"jax": jax.__version__},
    },
    "dualize": bench_dualize(args),
    "update": bench_update(args),
  }
  print(markdown(out))
  if args.json is not None:
    args.json.write_text(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  main()
