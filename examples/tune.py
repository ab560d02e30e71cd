"""The tuned comparison of ``docs/results.md``, end to end: tune, then measure at several budgets.

Runs the protocol that ``docs/results.md`` fixes (written down before its runs) on the
character-level GPT of ``char_gpt.py``, with every point at 3 seeds:

1. **Stage A**, per optimizer (``adamw``, ``muon``, ``scion``), coordinate descent on the
   width-64 proxy at 200 steps: the learning rate; then the warmup (0, 5%, 10%, 25% of the
   steps); then the optimizer's own hyperparameters (AdamW's β2 × weight decay, Muon's AdamW
   part's learning rate); then the learning rate again, one power of 2 on each side of the
   winner and further while the best is on an edge.
2. **Stage B**: each optimizer's stage-A settings at every other width × budget, its learning
   rate over the winner and its two neighbours (powers of 2), extended while the best is on an
   edge.
3. **Checks**: ``optax_muon`` (``optax.contrib.muon``) at Muon's tuned point of each width ×
   budget; the learning-rate-free methods' start chosen on the proxy, then run without any
   sweep at the other widths × budgets.

A stage's **winner** is the point with the lowest mean final held-out loss over the seeds (a
point where a seed diverged counts as diverged); a tie to the fourth decimal keeps the
incumbent (the previous stage's value), and between two new values the smaller one.

Every run appends its rows to one CSV (``results.csv``, the format of ``compare.py``), and a
run already in it is never run again, so an interrupted run of this script continues where it
stopped and a finished one only redraws the tables (``summary.md``, ``points.md``, with the
loss-vs-budget table and speedups) and plots. Two worker processes train at a time by default
(``--workers``), each with single-threaded XLA. The stages of different optimizers interleave;
the 8× budgets run last.

Run::

  python examples/tune.py --out-dir results/shakespeare_tuned            # hours on 2 CPU cores
  python examples/tune.py --out-dir results/shakespeare_tuned --budgets 128x200 --dry-run
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import io
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

SEEDS = (0, 1, 2)
PROXY = 64  # The proxy's width: stage A and the learning-rate-free start run here.
BASE_STEPS = 200  # The 1× budget.
BASE = dict(steps=BASE_STEPS, eval_every=25, n_layer=2, n_embd=PROXY)

#: Stage 1's learning rates (powers of 2) and each optimizer's starting settings.
STAGE1_LRS = {
  "adamw": compare.pow2(-10, -5),
  "muon": compare.pow2(-7, -3),
  "scion": compare.pow2(-8, -4),
}
START = {"adamw": {"b2": 0.95, "weight_decay": 0.1}, "muon": {"adam_lr": 3e-3}, "scion": {}}
#: Stage 2: warmup as a fraction of the run's steps (0 is the incumbent).
WARMUPS = (0.0, 0.05, 0.1, 0.25)
#: Stage 3: each optimizer's own hyperparameters (every combination listed).
OWN = {
  "adamw": [{"b2": b2, "weight_decay": wd} for b2 in (0.95, 0.98, 0.999) for wd in (0.0, 0.1)],
  "muon": [{"adam_lr": v} for v in (*compare.pow2(-10, -6), 3e-3)],
  "scion": [],
}
#: Stage B: ``(width, steps)`` beyond the proxy's 1×; 8× ones run last.
BUDGETS = ((PROXY, 800), (128, 200), (128, 800), (PROXY, 1600))
#: The reference optimizers also run at these (their loss-vs-budget curves bound the speedups).
REFERENCE_BUDGETS = {"adamw": ((128, 1600),), "muon": ((128, 1600),)}
#: The learning-rate-free methods and the starts tried on the proxy (0: Prodigy's d0 = 1e-6).
FREE = ("scion_free", "muon_free")
FREE_STARTS = (0.0, 1e-4, 1e-3, 1e-2)
TIE = 1e-4  # Mean losses closer than this tie (the fourth decimal).
MAX_EXTEND = 4  # At most this many extra powers of 2 past a grid's edge.

Point = tuple  # compare.POINT fields of one point (its runs differ in the seed only).


# -- the protocol as generators --------------------------------------------------------------------
#
# Each step of the protocol is a generator that yields a list of points to run (dicts of run
# settings; the driver runs every seed) and receives their results, ``[(mean, std), ...]`` in the
# same order; or yields None when it waits for another generator's result (the driver asks again
# later). ``tuned`` is shared: what each stage decided, read by the stages after it.


def point(optimizer, lr, width=PROXY, steps=BASE_STEPS, warmup=0.0, settings=None) -> dict:
  return dict(
    optimizer=optimizer, lr=float(lr), width=width, steps=steps, warmup=warmup,
    settings=dict(settings or {}),
  )  # fmt: skip


def winner(results: Sequence[tuple[dict, float]], incumbent: dict | None = None) -> dict:
  """The lowest mean; a tie to ``TIE`` keeps ``incumbent``, else the smallest learning rate."""
  best = min(loss for _, loss in results)
  if not math.isfinite(best):
    raise RuntimeError(f"every point diverged: {[p for p, _ in results]}")
  tied = [p for p, loss in results if loss - best < TIE]
  if incumbent is not None and any(p == incumbent for p in tied):
    return incumbent
  return min(tied, key=lambda p: p["lr"])


def bracket(center: dict, known: Mapping[float, float] | None = None) -> Generator:
  """The learning rate around ``center``: ``lr/2``, ``lr``, ``2·lr``, then one more power of 2
  past an edge while the best is on it (at most ``MAX_EXTEND`` times). ``known``: losses of
  learning rates already run at these settings. Returns the winning point."""
  losses = dict(known or {})
  lrs = {center["lr"] / 2, center["lr"], center["lr"] * 2}
  for _ in range(MAX_EXTEND + 1):
    todo = sorted(lr for lr in lrs if lr not in losses)
    if todo:
      results = yield [center | {"lr": lr} for lr in todo]
      losses |= {lr: mean for lr, (mean, _) in zip(todo, results, strict=True)}
    best = winner([(center | {"lr": lr}, loss) for lr, loss in losses.items()], center)
    lo, hi = min(losses), max(losses)
    if best["lr"] == lo:
      lrs = {lo / 2}
    elif best["lr"] == hi:
      lrs = {hi * 2}
    else:
      return best
  return best


def stage_a(name: str, tuned: dict) -> Generator:
  """Coordinate descent on the proxy; sets ``tuned[name, PROXY, BASE_STEPS]``."""
  start = point(name, 0, settings=START[name])
  grid = [start | {"lr": lr} for lr in STAGE1_LRS[name]]
  results = yield grid
  best = winner([(p, m) for p, (m, _) in zip(grid, results, strict=True)])
  warm = [best | {"warmup": w} for w in WARMUPS]
  results = yield warm
  best = winner([(p, m) for p, (m, _) in zip(warm, results, strict=True)], best)
  stage = list(zip(warm, results, strict=True))
  if OWN[name]:
    own = [best | {"settings": s} for s in OWN[name]]
    results = yield own
    stage = list(zip(own, results, strict=True))
    best = winner([(p, m) for p, (m, _) in stage], best)
  loss = next(m for p, (m, _) in stage if p == best)
  best = yield from bracket(best, {best["lr"]: loss})
  tuned[name, PROXY, BASE_STEPS] = best


def stage_b(name: str, width: int, steps: int, tuned: dict) -> Generator:
  """The stage-A settings at ``width`` × ``steps``, the learning rate bracketed."""
  while (name, PROXY, BASE_STEPS) not in tuned:
    yield None
  center = tuned[name, PROXY, BASE_STEPS] | {"width": width, "steps": steps}
  tuned[name, width, steps] = yield from bracket(center)


def check(name: str, like: str, width: int, steps: int, tuned: dict) -> Generator:
  """``name`` at ``like``'s tuned point of ``width`` × ``steps`` (same settings but its own
  optimizer's: optax_muon takes Muon's learning rates and warmup)."""
  while (like, width, steps) not in tuned:
    yield None
  yield [tuned[like, width, steps] | {"optimizer": name}]


def free_start(tuned: dict) -> Generator:
  """The learning-rate-free methods' start on the proxy: multiplier 1, no warmup."""
  grid = [point(n, 1.0, settings={"relative_d0": s}) for n in FREE for s in FREE_STARTS]
  results = yield grid
  for n in FREE:
    mine = [(p, m) for p, (m, _) in zip(grid, results, strict=True) if p["optimizer"] == n]
    tuned[n, PROXY, BASE_STEPS] = winner(mine, mine[0][0])


def free_run(name: str, width: int, steps: int, tuned: dict) -> Generator:
  while (name, PROXY, BASE_STEPS) not in tuned:
    yield None
  chosen = tuned[name, PROXY, BASE_STEPS] | {"width": width, "steps": steps}
  yield [chosen]
  tuned[name, width, steps] = chosen


def protocol(budgets: Sequence[tuple[int, int]], tuned: dict) -> list[tuple[int, str, Generator]]:
  """``(priority, name, generator)`` for every step; lower priorities run first."""

  def rank(width: int, steps: int) -> int:
    return 3 if steps >= 8 * BASE_STEPS else 1 + (steps > BASE_STEPS and width > PROXY)

  tracks = [(0, f"{n} stage A", stage_a(n, tuned)) for n in STAGE1_LRS]
  tracks.append((0, "free start", free_start(tuned)))
  for n in STAGE1_LRS:
    mine = [b for b in budgets if b in BUDGETS or b in REFERENCE_BUDGETS.get(n, ())]
    for width, steps in mine:
      tracks.append((rank(width, steps), f"{n} {width}x{steps}", stage_b(n, width, steps, tuned)))
  for width, steps in budgets:
    if width != PROXY and (width, steps) in BUDGETS:
      tracks.append(
        (rank(width, steps), f"optax_muon {width}x{steps}",
         check("optax_muon", "muon", width, steps, tuned))
      )  # fmt: skip
      for n in FREE:
        tracks.append(
          (rank(width, steps), f"{n} {width}x{steps}", free_run(n, width, steps, tuned))
        )
  return tracks


# -- running ---------------------------------------------------------------------------------------


def runs_of(spec: dict, module) -> list[dict]:
  """The runs (one per seed) of a point, as ``compare.grid`` makes them."""
  sweep = compare.Sweep(
    {spec["optimizer"]: (spec["lr"],)}, widths=(spec["width"],), warmups=(spec["warmup"],),
    steps=(spec["steps"],), seeds=SEEDS, settings={k: (v,) for k, v in spec["settings"].items()},
  )  # fmt: skip
  return compare.grid(module, BASE, [sweep])


_MODULE = None


def train(run: dict) -> str:
  """Trains one run in a worker; returns its CSV rows."""
  global _MODULE
  if _MODULE is None:
    _MODULE = compare.load_task("gpt")
  config = compare.make_config(_MODULE, BASE, **compare.config_point(run))
  metrics = _MODULE.main(config)
  width = getattr(config, compare.width_field(type(config)))
  rows = compare.history_rows("gpt", run, width, config, metrics)
  text = io.StringIO()
  csv.writer(text).writerows([[row[c] for c in compare.COLUMNS] for row in rows])
  return text.getvalue()


def _single_threaded() -> None:
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  )
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"


def finals(path: str) -> dict[tuple, float]:
  """``{run key: final held-out loss}`` of the complete runs in a results CSV (inf: diverged)."""
  if not os.path.isfile(path):
    return {}
  return {compare.run_key(r): r["final"] for r in compare.runs_from_rows(compare.read_csv(path))}


def run_protocol(
  out_dir: str,
  budgets: Sequence[tuple[int, int]] = (*BUDGETS, (128, 1600)),
  workers: int = 2,
  train_fn: Callable[[dict], str] = train,
  module=None,
  dry_run: bool = False,
) -> dict:
  """Runs every step of the protocol, appending to ``out_dir/results.csv``; returns ``tuned``
  (``{(optimizer, width, steps): winning point}``). ``workers=0`` trains in this process."""
  module = module or compare.load_task("gpt")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "results.csv")
  if not os.path.isfile(path):
    with open(path, "w", newline="") as f:
      csv.writer(f).writerow(compare.COLUMNS)
  done = finals(path)
  tuned: dict = {}
  tracks = [[prio, name, gen, None, None] for prio, name, gen in protocol(budgets, tuned)]
  # Per track: [priority, name, generator, its request (list of (spec, runs)), its results].
  for track in tracks:
    track[3] = _advance(track, None)
  pool = None
  if workers and not dry_run:
    _single_threaded()
    pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
  running: dict = {}  # future -> run key
  started, count = time.perf_counter(), 0
  try:
    while any(t[2] is not None for t in tracks):
      progressed = False
      for track in sorted((t for t in tracks if t[2] is not None), key=lambda t: t[0]):
        request = track[3]
        if request is None:  # Waiting on another track.
          track[3] = _advance(track, None)
          progressed |= track[3] is not None or track[2] is None
          continue
        keys = [compare.run_key(r) for _, runs in request for r in runs]
        if all(k in done for k in keys):
          results = [
            compare.mean_std([done[compare.run_key(r)] for r in runs]) for _, runs in request
          ]
          track[3] = _advance(track, results, module)
          progressed = True
          continue
        for _spec, runs in request:
          for run in runs:
            key = compare.run_key(run)
            if key in done or key in running.values():
              continue
            if dry_run:
              print(f"would run: {track[1]}: {_describe(run)}")
              done[key] = _fake_loss(run)
              progressed = True
            elif pool is None:
              _append(path, train_fn(run))
              done.update(finals(path))
              progressed = True
            elif len(running) < workers:
              running[pool.submit(train_fn, run)] = key
              progressed = True
      if running and not progressed:
        finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
        for future in finished:
          running.pop(future)
          _append(path, future.result())
          count += 1
        done.update(finals(path))
        elapsed = (time.perf_counter() - started) / 60
        print(f"{count} runs in {elapsed:.1f} min; tuned so far: {len(tuned)}", flush=True)
      elif not progressed and not running:
        raise RuntimeError(f"the protocol is stuck: {[t[1] for t in tracks if t[2] is not None]}")
  finally:
    if pool is not None:
      pool.shutdown(cancel_futures=True)
  return tuned


def _advance(track: list, results, module=None):
  """Sends ``results`` to the track's generator; returns its next request as (spec, runs)."""
  gen = track[2]
  try:
    request = gen.send(results) if results is not None or track[4] else next(gen)
  except StopIteration:
    track[2] = None
    return None
  track[4] = True  # Started.
  if request is None:
    return None
  module = module or compare.load_task("gpt")
  return [(spec, runs_of(spec, module)) for spec in request]


def _append(path: str, text: str) -> None:
  with open(path, "a", newline="") as f:
    f.write(text)


def _describe(run: dict) -> str:
  return (
    f"{run['optimizer']} lr={run['lr']:.4g} width={run['width']} steps={run['steps']}"
    f" warmup={run['warmup']} {run['settings']} seed={run['seed']}"
  )


def _fake_loss(run: dict) -> float:
  """For ``--dry-run``: a bowl in log2(lr) around 2^-6, to walk the stages without training."""
  return 2.0 + 0.01 * (math.log2(run["lr"]) + 6) ** 2


def parse_budgets(text: str) -> tuple[tuple[int, int], ...]:
  """``"64x800,128x200"`` as ``((64, 800), (128, 200))``."""
  budgets = []
  for item in filter(None, (s.strip() for s in text.split(","))):
    width, _, steps = item.partition("x")
    if not (width.isdigit() and steps.isdigit()):
      raise ValueError(f"--budgets: expected WIDTHxSTEPS items like 128x800, got {item!r}.")
    budgets.append((int(width), int(steps)))
  return tuple(budgets)


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out-dir", default="runs/tuned", help="where results.csv and tables go")
  every = (*BUDGETS, *sorted({b for bs in REFERENCE_BUDGETS.values() for b in bs}))
  default = ",".join(f"{w}x{s}" for w, s in every)
  p.add_argument("--budgets", default=default, help=f"stage B's WIDTHxSTEPS (default {default})")
  p.add_argument("--workers", type=int, default=2, help="training processes (0: in this one)")
  p.add_argument("--dry-run", action="store_true", help="walk the stages on a made-up loss")
  args = p.parse_args(argv)
  tuned = run_protocol(
    args.out_dir, parse_budgets(args.budgets), workers=args.workers, dry_run=args.dry_run
  )
  for (name, width, steps), best in sorted(tuned.items()):
    print(f"{name:11s} width {width:4d} steps {steps:5d}: {best}")
  if not args.dry_run:
    for path in compare.replot(os.path.join(args.out_dir, "results.csv")):
      print("wrote", path)
  return tuned


if __name__ == "__main__":
  main()
