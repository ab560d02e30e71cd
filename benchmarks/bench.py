"""normax speed and memory benchmark against optax baselines, all in one run.

Sections (``--sections``, default all):

- ``update``: the jitted optimizer update alone on GPT-like parameter trees
  (token embedding, per layer q/k/v/o ``d×d``, MLP ``d×4d``/``4d×d``, RMSNorm
  gains, head ``d×vocab``), as a list of layers and as a scanned stack, for
  normax ``scion`` (``presets.scion_gpt``), normax ``muon`` (batched and
  per-leaf, Gram form, and its variants: AOL with one Newton–Schulz step
  fewer, Polar Express, consistent RMS, adaptive, NorMuon, cautious weight
  decay, hyperball), the learning-rate-free ``scion_free`` and ``muon_free``,
  ``scale_by_shampoo`` and ``scale_by_soap`` on every matrix (AdamW on the
  rest), and the baselines ``optax.contrib.muon`` (also with AOL) and
  ``optax.adamw``; ratios to both baselines.
- ``ns``: Newton–Schulz achieved FLOP/s (plain-iteration count) against a
  large matmul measured in the same run.
- ``train``: a full char-GPT training step (forward, backward, update) with
  ``scion`` against ``adamw``, plus compile time, peak memory of the step
  with donated buffers (compiled memory analysis) and a recompilation check.
- ``state``: optimizer-state bytes as a ratio to parameter bytes.

Run ``python benchmarks/bench.py --quick`` for a smoke test; the full run is
``python benchmarks/bench.py``. Results print as tables and go to ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import normax  # noqa: E402

# -- timing -------------------------------------------------------------------


def timeit(fn, *args, repeats: int, warmup: int = 2) -> float:
  """Median seconds of ``fn(*args)`` (blocked), after ``warmup`` calls (compile included)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def machine() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  versions = {"jax": jax.__version__, "optax": optax.__version__, "normax": normax.__version__}
  try:
    import flax

    versions["flax"] = flax.__version__
  except ImportError:
    pass
  return {
    "platform": dev.platform,
    "device": getattr(dev, "device_kind", str(dev)),
    "device_count": jax.device_count(),
    "cpu": cpu,
    "cpu_count": os.cpu_count(),
    "python": platform.python_version(),
    "versions": versions,
    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
  }


def table(rows: list[dict], cols: list[str]) -> str:
  fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
  cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
  lines.append("  ".join("-" * w for w in widths))
  lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
  return "\n".join(lines)


# -- GPT-like parameter trees ---------------------------------------------------


def gpt_params(key, vocab: int, d: int, depth: int, scanned: bool, dtype=jnp.float32):
  """Parameter tree with a GPT's shapes (paths as a Flax NNX model would name them)."""
  count = iter(range(1 << 30))
  normal = lambda *shape: (
    0.02 * jax.random.normal(jax.random.fold_in(key, next(count)), shape)
  ).astype(dtype)

  def layer(lead=()):
    return {
      "attn": {n: {"kernel": normal(*lead, d, d)} for n in ("query", "key", "value", "out")},
      "mlp": {
        "up": {"kernel": normal(*lead, d, 4 * d)},
        "down": {"kernel": normal(*lead, 4 * d, d)},
      },
      "norm1": {"scale": jnp.ones((*lead, d), dtype)},
      "norm2": {"scale": jnp.ones((*lead, d), dtype)},
    }

  layers = layer((depth,)) if scanned else [layer() for _ in range(depth)]
  return {
    "embed": {"embedding": normal(vocab, d)},
    "layers": layers,
    "final_norm": {"scale": jnp.ones((d,), dtype)},
    "lm_head": {"kernel": normal(d, vocab)},
  }


#: Every matrix on Muon, the rest on AdamW; a scanned stack (layers, d_in, d_out) is a stack of
#: matrices over its last two axes (stated: labelling by name does not guess it).
_muon_labels = normax.label_by_path(
  [normax.Rule("*", "muon", min_ndim=2, view=normax.MatrixView(-2, -1))], default="adam"
)


def _optax_muon_dims(params):
  dims = optax.contrib.MuonDimensionNumbers
  return jax.tree.map(
    lambda p: dims(reduction_axis=p.ndim - 2, output_axis=p.ndim - 1) if p.ndim >= 2 else None,
    params,
  )


OPTIMIZERS = (
  "scion",
  "scion (per-leaf)",
  "muon",
  "muon (per-leaf)",
  "muon (gram)",
  "scion_free",
  "muon_free",
  "shampoo",
  "shampoo (roots every 10)",
  "soap",
  "soap (basis every 10)",
  "optax.contrib.muon",
  "optax.adamw",
  # The Muon variants (normax.muon flags) and optax's own AOL variant beside them.
  "muon (aol -1 step)",
  "optax.contrib.muon (aol -1 step)",
  "muon (polar express)",
  "muon (polar express gram)",
  "muon (consistent rms)",
  "muon (adaptive)",
  "muon (normuon)",
  "muon (cautious wd)",
  "muon (hyperball)",
)

# Shampoo and SOAP split each side of a matrix longer than this into blocks.
SHAMPOO_BLOCK = 1024
# Contestants timed on their second step: a step that reuses the roots or bases
# computed on the first (every other contestant is timed on its first step).
SECOND_STEP = ("shampoo (roots every 10)", "soap (basis every 10)")


def shampoo(lr, every: int = 1):
  """Shampoo (then momentum) on every matrix, AdamW on the rest (the split of ``muon``)."""
  matrices = optax.chain(
    normax.scale_by_shampoo(block_size=SHAMPOO_BLOCK, precondition_every=every),
    normax.momentum(0.9),
    optax.scale_by_learning_rate(lr),
  )
  return optax.partition({"muon": matrices, "adam": optax.adamw(lr)}, _muon_labels)


def soap(lr, every: int = 1):
  """SOAP on every matrix, AdamW on the rest."""
  matrices = optax.chain(
    normax.scale_by_soap(block_size=SHAMPOO_BLOCK, precondition_every=every),
    optax.scale_by_learning_rate(lr),
  )
  return optax.partition({"muon": matrices, "adam": optax.adamw(lr)}, _muon_labels)


# The benchmark's parameters are built here: every rank-3 leaf is a scanned stack of dense kernels
# (layers, d_in, d_out), stated as such (labelling by name refuses to guess it).
STACKED = normax.Rule("*", "hidden", min_ndim=3, view=normax.MatrixView(-2, -1))


def optimizers(ns_dtype=None, steps: int = 5) -> dict:
  """The update-section contestants, by name (``ns_dtype`` applies to normax only)."""
  labels, specs = normax.presets.scion_gpt(rules=[STACKED])
  spectral = normax.Spectral(steps=steps, compute_dtype=ns_dtype)
  specs = dict(specs, hidden=dataclasses.replace(specs["hidden"], norm=spectral))
  lr = 1e-3
  muon = lambda **kw: normax.muon(lr, labels=_muon_labels, ns_steps=steps, **kw)  # noqa: E731
  return {
    "scion": lambda: normax.scion(lr, specs, labels),
    "scion (per-leaf)": lambda: normax.scion(lr, specs, labels, batch=False),
    "muon": lambda: muon(),
    "muon (per-leaf)": lambda: muon(batch=False),
    "muon (gram)": lambda: muon(orthogonalizer=normax.Orthogonalizer(method="gram_newton_schulz")),
    "scion_free": lambda: normax.scion_free(specs, labels),
    "muon_free": lambda: normax.muon_free(_muon_labels, ns_steps=steps),
    "shampoo": lambda: shampoo(lr),
    "shampoo (roots every 10)": lambda: shampoo(lr, every=10),
    "soap": lambda: soap(lr),
    "soap (basis every 10)": lambda: soap(lr, every=10),
    "optax.contrib.muon": lambda: optax.contrib.muon(
      lr, ns_steps=steps, muon_weight_dimension_numbers=_optax_muon_dims
    ),
    "optax.adamw": lambda: optax.adamw(lr),
    "muon (aol -1 step)": lambda: normax.muon(
      lr, labels=_muon_labels, ns_steps=steps - 1, preconditioning="aol"
    ),
    "optax.contrib.muon (aol -1 step)": lambda: optax.contrib.muon(
      lr,
      ns_steps=steps - 1,
      preconditioning="aol",
      muon_weight_dimension_numbers=_optax_muon_dims,
    ),
    "muon (polar express gram)": lambda: muon(
      ns_coeffs="polar_express", orthogonalizer=normax.Orthogonalizer(method="gram_newton_schulz")
    ),
    "muon (polar express)": lambda: muon(ns_coeffs="polar_express"),
    "muon (consistent rms)": lambda: muon(consistent_rms=0.2, weight_decay=0.1),
    "muon (adaptive)": lambda: muon(adaptive=True),
    "muon (normuon)": lambda: muon(normuon=True),
    "muon (cautious wd)": lambda: muon(weight_decay=0.1, cautious_weight_decay=True),
    "muon (hyperball)": lambda: muon(hyperball="frobenius"),
  }


def round_robin(calls: dict, *, repeats: int, warmup: int) -> tuple[dict, dict]:
  """Median time of each ``fn(*args)`` in ``calls`` and median ratios between them.

  The contestants are timed in turn, once per round, and each ratio is the
  median over rounds of that round's ratio: on a shared machine whose load
  drifts, a ratio is then far steadier than the ratio of two medians.
  """
  for _ in range(warmup):
    for fn, a in calls.values():
      jax.block_until_ready(fn(*a))
  rounds = []
  for _ in range(repeats):
    t = {}
    for name, (fn, a) in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*a))
      t[name] = time.perf_counter() - t0
    rounds.append(t)
  times = {name: statistics.median(r[name] for r in rounds) for name in calls}
  ratios = {(x, y): statistics.median(r[x] / r[y] for r in rounds) for x in calls for y in calls}
  return times, ratios


def bench_update(args) -> list[dict]:
  rows = []
  opts = {k: v for k, v in optimizers(args.ns_dtype, args.ns_steps).items() if k in args.optimizers}
  for scanned in (False, True):
    tree = "scanned" if scanned else "list"
    if tree not in args.trees:
      continue
    for d in args.widths:
      for depth in args.depths:
        params = gpt_params(jax.random.key(0), args.vocab, d, depth, scanned)
        key = jax.random.key(1)
        grads = jax.tree.map(lambda p, k=key: jax.random.normal(k, p.shape, p.dtype), params)
        calls = {}
        for name, make in opts.items():
          tx = make()
          update, state = jax.jit(tx.update), tx.init(params)
          if name in SECOND_STEP:
            state = update(grads, state, params)[1]
          calls[name] = (update, (grads, state, params))
        times, ratios = round_robin(calls, repeats=args.repeats, warmup=args.warmup)
        for name, t in times.items():
          rows.append(
            {
              "tree": tree,
              "width": d,
              "depth": depth,
              "optimizer": name,
              "ms": 1e3 * t,
              "/optax.muon": ratios.get((name, "optax.contrib.muon"), float("nan")),
              "/adamw": ratios.get((name, "optax.adamw"), float("nan")),
            }
          )
        print(f"  update: {tree} d={d} L={depth} done", flush=True)
  return rows


# -- Newton–Schulz FLOP/s -------------------------------------------------------


def ns_flops(m: int, n: int, steps: int) -> int:
  """FLOPs of the plain quintic iteration on one m×n matrix (Gram on the short side)."""
  m, n = min(m, n), max(m, n)
  return steps * (2 * m * m * n + 2 * m**3 + 2 * m * m * n)


def timeit_pair(f, fargs, g, gargs, *, repeats: int, warmup: int) -> tuple[float, float, float]:
  """Medians of ``t_f``, ``t_g`` and ``t_f / t_g``, timed alternately.

  Alternating the two makes their ratio robust to a machine whose load
  drifts (other processes on a shared CPU).
  """
  for _ in range(warmup):
    jax.block_until_ready(f(*fargs))
    jax.block_until_ready(g(*gargs))
  tf, tg = [], []
  for _ in range(repeats):
    for fn, a, out in ((f, fargs, tf), (g, gargs, tg)):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*a))
      out.append(time.perf_counter() - t0)
  ratios = [x / y for x, y in zip(tf, tg, strict=True)]
  return statistics.median(tf), statistics.median(tg), statistics.median(ratios)


def bench_ns(args) -> list[dict]:
  """Newton–Schulz FLOP/s (plain-iteration count) over a large matmul's, timed alternately."""
  dtype = jnp.dtype(args.ns_dtype or "float32")
  size = args.matmul_size
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  mm_flops = 2 * size**3
  ns = {
    gram: jax.jit(
      lambda x, gram=gram: normax.newton_schulz(
        x, steps=args.ns_steps, compute_dtype=args.ns_dtype, gram=gram
      )
    )
    for gram in (False, True)
  }
  rows = []
  for d in args.widths:
    for shape in ((d, d), (d, 4 * d), (4, d, d), (2, d, 4 * d)):
      x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
      batch = int(np.prod(shape[:-2], dtype=np.int64))
      flops = batch * ns_flops(*shape[-2:], args.ns_steps)
      # The Gram form only pays on rectangular matrices; its rate counts the plain FLOPs.
      for gram in (False, True) if shape[-1] != shape[-2] else (False,):
        t_mm, t_ns, r = timeit_pair(
          mm, (a, a), ns[gram], (x,), repeats=args.repeats, warmup=args.warmup
        )
        rows.append(
          {
            "case": f"newton_schulz{' (gram)' if gram else ''} {shape} x{args.ns_steps}",
            "ms": 1e3 * t_ns,
            "GFLOP/s": flops / t_ns / 1e9,
            f"matmul {size} GFLOP/s": mm_flops / t_mm / 1e9,
            "of matmul": r * flops / mm_flops,  # median over pairs of (NS rate / matmul rate)
          }
        )
  return rows


# -- state bytes -------------------------------------------------------------------


def nbytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def bench_state(args) -> list[dict]:
  d = args.widths[-1]
  params = gpt_params(jax.random.key(0), args.vocab, d, args.depths[-1], scanned=False)
  labels, specs = normax.presets.scion_gpt(rules=[STACKED])
  txs = {
    "scion (f32 momentum)": normax.scion(1e-3, specs, labels),
    "scion (bf16 momentum)": normax.scion(1e-3, specs, labels, mu_dtype=jnp.bfloat16),
    "muon": normax.muon(1e-3, labels=_muon_labels),
    "scion_free": normax.scion_free(specs, labels),
    "muon_free": normax.muon_free(_muon_labels),
    "shampoo": shampoo(1e-3),
    "soap": soap(1e-3),
    "optax.contrib.muon": optax.contrib.muon(1e-3),
    "optax.adamw": optax.adamw(1e-3),
  }
  p = nbytes(params)
  rows = []
  for name, tx in txs.items():
    s = nbytes(jax.eval_shape(tx.init, params))
    rows.append({"optimizer": name, "state MB": s / 2**20, "state / params": s / p})
  return rows


# -- char-GPT training step -------------------------------------------------------


def _example_gpt(path: Path):
  spec = importlib.util.spec_from_file_location("char_gpt", path)
  mod = importlib.util.module_from_spec(spec)
  sys.modules["char_gpt"] = mod  # dataclasses look their module up there.
  spec.loader.exec_module(mod)
  return mod.Config, mod.GPT, mod.loss_fn, mod.make_optimizer


def _config(Config, **kw):
  names = {f.name for f in dataclasses.fields(Config)}
  return Config(**{k: v for k, v in kw.items() if k in names})


def bench_train(args) -> tuple[list[dict], dict]:
  from flax import nnx

  example = Path(args.example)
  if not example.is_file():
    raise FileNotFoundError(
      f"--example {example} is not a file; pass the path of examples/char_gpt.py (or a script"
      " with its Config, GPT, loss_fn and make_optimizer)."
    )
  Config, GPT, loss_fn, make_optimizer = _example_gpt(example)
  info = {"model": str(example)}
  rows = []
  results = {}
  for name in args.train_optimizers:
    c = _config(
      Config,
      optimizer=name,
      n_embd=args.train_width,
      n_layer=args.train_depth,
      n_head=max(1, args.train_width // 64),
      block_size=args.block_size,
      batch_size=args.batch_size,
      ns_dtype=args.ns_dtype,
      mu_dtype=args.mu_dtype,
      ns_method=args.ns_method,
      vocab_size=65,
    )
    fields = {f.name for f in dataclasses.fields(Config)}
    for flag in ("ns_dtype", "mu_dtype", "ns_method"):
      if getattr(args, flag) not in (None, "newton_schulz") and flag not in fields:
        info[f"note {flag}"] = f"the example's Config has no {flag}: its default is used"
    model = GPT(c, rngs=nnx.Rngs(0))
    tx = make_optimizer(c)
    if isinstance(tx, nnx.Optimizer):  # An example may hand back the wrapper.
      tx = tx.tx
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)

    def step(params, opt_state, rest, x, y, tx=tx, graphdef=graphdef):
      def loss(p):
        return loss_fn(nnx.merge(graphdef, p, rest), x, y)

      value, grads = jax.value_and_grad(loss)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value

    jstep = jax.jit(step, donate_argnums=(0, 1))
    x = jax.random.randint(jax.random.key(2), (args.batch_size, args.block_size), 0, 65)
    y = jnp.roll(x, -1, axis=1)
    t0 = time.perf_counter()
    compiled = jstep.lower(params, opt_state, rest, x, y).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    peak = getattr(mem, "peak_memory_in_bytes", 0) if mem is not None else 0
    if not peak and mem is not None:
      peak = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
      peak += mem.temp_size_in_bytes
    # Time the jitted (not the AOT) function, so its cache counts compilations.
    state = [params, opt_state]

    def run(x, y, state=state, jstep=jstep, rest=rest):
      state[0], state[1], value = jstep(state[0], state[1], rest, x, y)
      return value

    t = timeit(run, x, y, repeats=args.repeats, warmup=max(args.warmup, 2))
    cache = jstep._cache_size() if hasattr(jstep, "_cache_size") else -1
    results[name] = t
    rows.append(
      {
        "optimizer": name,
        "ms/step": 1e3 * t,
        "compile s": compile_s,
        "peak MB": peak / 2**20,
        "params MB": nbytes(params) / 2**20,
        "state MB": nbytes(opt_state) / 2**20,
        "compilations": cache,
      }
    )
  for r in rows:
    r["/adamw"] = results[r["optimizer"]] / results["adamw"]
  peaks = {r["optimizer"]: r["peak MB"] for r in rows}
  for r in rows:
    r["peak /adamw"] = peaks[r["optimizer"]] / peaks["adamw"] if peaks["adamw"] else float("nan")
  return rows, info


# -- main ---------------------------------------------------------------------------


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
  p.add_argument("--sections", default="update,ns,state,train")
  p.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024])
  p.add_argument("--depths", type=int, nargs="+", default=[4])
  p.add_argument("--vocab", type=int, default=256, help="vocabulary of the update trees")
  p.add_argument("--ns-steps", type=int, default=5)
  p.add_argument("--ns-dtype", default=None, help="Newton–Schulz compute dtype, e.g. bfloat16")
  p.add_argument(
    "--matmul-size", type=int, default=None, help="reference matmul size (default by device)"
  )
  p.add_argument("--repeats", type=int, default=5, help="timed calls per case (median)")
  p.add_argument("--warmup", type=int, default=2, help="untimed calls first (compile included)")
  p.add_argument(
    "--optimizers",
    default=",".join(OPTIMIZERS),
    help="update section: comma-separated subset of " + ", ".join(OPTIMIZERS),
  )
  p.add_argument("--trees", default="list,scanned", help="update section: list and/or scanned")
  p.add_argument(
    "--example",
    default=str(ROOT / "examples" / "char_gpt.py"),
    help="train section: the char-GPT script whose Config, GPT, loss_fn, make_optimizer run",
  )
  p.add_argument("--mu-dtype", default=None, help="train section: Scion's momentum dtype")
  p.add_argument(
    "--ns-method",
    default=None,
    choices=["newton_schulz", "gram_newton_schulz"],
    help="train section: Scion's Newton–Schulz form (the example's ns_method; default: Spectral's)",
  )
  p.add_argument(
    "--train-optimizers",
    default="scion,adamw",
    help="train section: comma-separated subset of the example's optimizers (adamw included)",
  )
  p.add_argument("--train-width", type=int, default=256)
  p.add_argument("--train-depth", type=int, default=4)
  p.add_argument("--block-size", type=int, default=128)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument(
    "--json",
    default=None,
    help="where to write the results (default: benchmarks/results.json; with --quick, a file\n"
    "in a new temporary folder)",
  )
  args = p.parse_args(argv)
  if args.json is None:  # A quick run is a smoke test: keep its file out of the checkout.
    quick_dir = Path(tempfile.mkdtemp(prefix="normax-bench-")) if args.quick else None
    args.json = str(quick_dir / "results.json") if quick_dir else "benchmarks/results.json"
  args.optimizers = args.optimizers.split(",")
  args.trees = args.trees.split(",")
  args.train_optimizers = args.train_optimizers.split(",")
  if "adamw" not in args.train_optimizers:
    p.error("--train-optimizers must include adamw (the step times are reported relative to it)")
  unknown = set(args.optimizers) - set(OPTIMIZERS)
  if unknown:
    p.error(f"--optimizers: unknown {sorted(unknown)}; choose from {list(OPTIMIZERS)}")
  if args.quick:  # Tiny sizes, except where a flag was given explicitly.
    quick = dict(widths=[64], depths=[1], vocab=65, repeats=2, warmup=1, matmul_size=256)
    quick.update(train_width=64, train_depth=1, block_size=32, batch_size=4)
    for name, value in quick.items():
      if getattr(args, name) == p.get_default(name):
        setattr(args, name, value)
  if args.matmul_size is None:
    args.matmul_size = 1024 if jax.default_backend() == "cpu" else 8192
  return args


def main(argv=None) -> dict:
  args = parse(argv)
  sections = args.sections.split(",")
  out = {"machine": machine(), "args": vars(args)}
  print(json.dumps(out["machine"], indent=1), flush=True)

  def save():  # After every section, so a later failure keeps what was measured.
    if args.json:
      path = Path(args.json)
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(out, indent=1, default=str))

  if "update" in sections:
    rows = bench_update(args)
    out["update"] = rows
    cols = ["tree", "width", "depth", "optimizer", "ms", "/optax.muon", "/adamw"]
    print("\nOptimizer update (jitted, median ms)\n" + table(rows, cols), flush=True)
    save()
  if "ns" in sections:
    out["ns"] = bench_ns(args)
    cols = ["case", "ms", "GFLOP/s", f"matmul {args.matmul_size} GFLOP/s", "of matmul"]
    print(f"\nNewton–Schulz FLOP/s ({args.ns_dtype or 'float32'})\n" + table(out["ns"], cols))
    save()
  if "state" in sections:
    out["state"] = bench_state(args)
    print("\nOptimizer state\n" + table(out["state"], ["optimizer", "state MB", "state / params"]))
    save()
  if "train" in sections:
    rows, info = bench_train(args)
    out["train"], out["train_info"] = rows, info
    cols = ["optimizer", "ms/step", "/adamw", "compile s", "peak MB", "peak /adamw"]
    cols += ["params MB", "state MB", "compilations"]
    print(f"\nTraining step ({info})\n" + table(rows, cols), flush=True)
  save()
  if args.json:
    print(f"\nwrote {args.json}")
  return out


if __name__ == "__main__":
  main()
