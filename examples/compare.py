"""Compare optimizers on a grid of learning rates (× widths, warmups, batch sizes); plot it.

Runs ``main(config)`` of an example (``--task image``: ``image_classification.py``; ``--task
gpt``: ``char_gpt.py``) once per grid point, appends the results to one CSV, and draws:

- ``curves.png``: held-out (solid) and train (dashed) loss against step, for each optimizer at
  its best learning rate (lowest final held-out loss);
- ``lr_width.png``: final held-out loss against learning rate, one panel per optimizer, one
  line per width: the hyperparameter-transfer picture of the Scion paper (an optimizer whose
  best learning rate does not move with width transfers);
- ``lr_warmup.png`` and ``lr_batch_size.png`` the same across warmups and batch sizes, when
  the grid varies them;
- ``summary.md``: a table of each optimizer's best learning rate and final metrics, and one
  per swept axis (best learning rate and loss at each width, warmup or batch size, and the
  loss when the base setting's best learning rate is reused there).

- ``lr_radii.png``: the same across Scion radius settings (``--radii``), the proxy tuning of
  the Scion paper: tune the learning rate and the radii on a small model, then reuse them;
- ``summary.md`` also gives, for each pair of optimizers, the fraction of its own steps one
  needs to reach the other's final held-out loss (from the mean curves).

Every grid point runs once per seed (``--seeds 0,1,2``); tables give the mean ± standard
deviation over seeds, curves the mean with a ±1 std band, and "best learning rate" means the
lowest mean final held-out loss (a point where any seed diverged counts as diverged).

The CSV (``results.csv``) has one row per run per evaluation point: ``task, optimizer, lr,
width, warmup, batch_size, radii, seed, steps, step, train_loss, eval_loss, eval_acc, seconds``
(``radii`` empty for the task's default radii; ``eval_acc`` empty for the GPT; ``seconds`` is the
run's wall time, repeated on its rows). A run's last row has ``step == steps``; a run that
diverged gets that row with NaN losses. Plots compare runs that differ in one setting only: the
others are held at their most frequent value.

Run::

  python examples/compare.py --preset smoke                    # 14 tiny runs, 1-2 minutes
  python examples/compare.py --preset fashion_mnist --out-dir results/fashion_mnist
  python examples/compare.py --preset shakespeare --out-dir results/shakespeare
  python examples/compare.py --task image --optimizers scion,adamw --lrs 2**-8,2**-6,2**-4 \\
      --widths 64,256 --set dataset=digits --set steps=300
  python examples/compare.py --replot results/fashion_mnist/results.csv

``--resume`` skips the runs already complete in the CSV, so a stopped grid picks up where it
left off; ``--shard K/N`` runs every N-th run starting at the K-th (0-based) and appends to the
same CSV, so N processes can share a grid (e.g. one per CPU core).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import io
import itertools
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from types import ModuleType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_number, parse_radii  # noqa: E402

# The grids (data); Sweep and pow2 also build the command line's grids and examples/tune.py's.
from grids import ALL_OPTIMIZERS, PRESETS, Sweep, pow2  # noqa: E402, F401

TASKS = {"image": "image_classification", "gpt": "char_gpt"}
COLUMNS = (
  "task", "optimizer", "lr", "width", "warmup", "batch_size", "radii", "settings", "seed",
  "steps", "step", "train_loss", "eval_loss", "eval_acc", "seconds",
)  # fmt: skip
# A grid point (its steps are its budget) ...
POINT = ("optimizer", "lr", "width", "warmup", "batch_size", "radii", "settings", "steps")
KEY = (*POINT, "seed")  # ... and one run of it.
# Settings a sweep can vary besides lr (plots and tables hold the others, and the steps, at
# their most frequent value).
AXES = ("width", "warmup", "batch_size", "radii", "settings")
TEXT_FIELDS = ("task", "optimizer", "radii", "settings")  # CSV columns read as strings.
# The order of the tables: the above, then these, then any other name alphabetically.
VARIANT_ORDER = (
  "normuon", "muon_aol", "muon_rms", "scion_free", "muon_free", "shampoo", "soap", "scion_last2",
)  # fmt: skip


# -- running ------------------------------------------------------------------------------------


def load_task(task: str) -> ModuleType:
  if task not in TASKS:
    raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {task!r}.")
  return importlib.import_module(TASKS[task])


def width_field(config_cls) -> str:
  """The name of the width setting: ``width``, or ``n_embd`` for the GPT."""
  names = {f.name for f in dataclasses.fields(config_cls)}
  for name in ("width", "n_embd"):
    if name in names:
      return name
  raise ValueError(f"{config_cls.__qualname__} has no 'width' or 'n_embd' field to sweep.")


def make_config(module: ModuleType, base: dict, **point):
  """``module.Config`` with ``base`` and one grid point, quiet, writing no files."""
  Config = module.Config
  fields = {f.name for f in dataclasses.fields(Config)}
  quiet = {"out": None, "plot": None, "progress": False, "sample_len": 0}
  values = {k: v for k, v in quiet.items() if k in fields} | dict(base)
  width = point.pop("width")
  if width is not None:
    values[width_field(Config)] = width
  values |= {k: v for k, v in point.items() if v is not None}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(
      f"{module.__name__}.Config has no field(s) {', '.join(unknown)}; its fields are"
      f" {', '.join(sorted(fields))}."
    )
  return Config(**values)


def grid(module: ModuleType, base: dict, sweeps: Sequence[Sweep]) -> list[dict]:
  """The distinct runs of ``sweeps``, as dicts of the ``KEY`` settings plus steps/eval_every."""
  defaults = module.Config()
  base_steps = base.get("steps", defaults.steps)
  base_eval = base.get("eval_every", defaults.eval_every)
  base_batch = base.get("batch_size", defaults.batch_size)
  wfield = width_field(module.Config)
  base_width = base.get(wfield, getattr(defaults, wfield))
  runs, seen = [], set()
  for sweep in sweeps:
    names = list(sweep.settings)
    for optimizer, lrs in sweep.lrs.items():
      for lr, width, warmup, batch, radii, budget, seed, *values in itertools.product(
        lrs, sweep.widths, sweep.warmups, sweep.batch_sizes, sweep.radii, sweep.steps,
        sweep.seeds, *(sweep.settings[n] for n in names),
      ):  # fmt: skip
        scale = base_batch / batch if (sweep.same_examples and batch) else 1.0
        budget = budget or base_steps
        steps = max(1, round(budget * scale))
        settings = dict(zip(names, values, strict=True))
        run = dict(
          optimizer=optimizer, lr=float(lr), width=width or base_width,
          warmup=round(warmup * steps) if warmup < 1 else int(warmup * scale),
          batch_size=batch or base_batch, radii=normalize_radii(radii),
          settings=format_settings(settings), values=settings, seed=int(seed), steps=steps,
          eval_every=max(1, round(base_eval * budget / base_steps * scale)),
        )  # fmt: skip
        key = run_key(run)
        if key not in seen:
          seen.add(key)
          runs.append(run)
  return runs


def normalize_radii(radii: str | None) -> str:
  """``"head=10, hidden=3"`` as ``"head=10,hidden=3"`` (sorted, numbers as ``%g``); None: ``""``."""
  return ",".join(f"{k}={v:g}" for k, v in sorted(parse_radii(radii).items()))


def format_settings(settings: Mapping[str, object]) -> str:
  """``{"b2": 0.98, "weight_decay": 0.0}`` as ``"b2=0.98,weight_decay=0"`` (sorted, numbers
  as ``%g``): the ``settings`` column."""
  fmt = lambda v: f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
  return ",".join(f"{k}={fmt(v)}" for k, v in sorted(settings.items()))


def run_key(row: dict, fields: Sequence[str] = KEY) -> tuple:
  """Identifies a run (or, with ``fields=POINT``, a grid point) by its settings, numbers
  formatted so that CSV round trips match."""
  fmt = lambda v: "" if v in (None, "") else f"{float(v):.6g}"
  return tuple(
    row.get(k) or "" if k in TEXT_FIELDS else fmt(row.get(k, 0) if k == "seed" else row[k])
    for k in fields
  )


def completed_runs(path: str) -> set:
  if not os.path.isfile(path):
    return set()
  rows = read_csv(path)
  if rows and ("radii" not in rows[0] or "seed" not in rows[0]):
    raise ValueError(
      f"{path} was written by an older compare.py (no radii/seed columns); move it away or"
      " pass --overwrite."
    )
  return {run_key(r) for r in rows if r["step"] == r["steps"]}


def run_grid(
  module: ModuleType,
  task: str,
  base: dict,
  sweeps: Sequence[Sweep],
  out_dir: str,
  resume: bool = False,
  shard: tuple[int, int] = (0, 1),
  overwrite: bool = False,
  only: Mapping[str, Sequence] | None = None,
) -> str:
  """Runs every grid point, appending to ``out_dir/results.csv``; returns the CSV's path.

  A CSV that already holds runs is an error unless ``resume`` (keep it, run what is missing)
  or ``overwrite`` (start it over).

  With ``shard=(k, n)`` only every n-th run from the k-th is run, the CSV is appended to
  (never truncated) and runs already complete in it are skipped, so n processes can share it.

  ``only`` (``{field: values}``, fields of a run's identity such as ``steps`` or ``optimizer``)
  runs the part of the grid with those values first (e.g. the smallest budget); the rest of
  the grid runs when called again without it (the same runs, in any order).
  """
  index, count = shard
  if not 0 <= index < count:
    raise ValueError(f"shard must be K/N with 0 <= K < N, got {index}/{count}.")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "results.csv")
  runs = select_runs(grid(module, base, sweeps), only or {})
  known = getattr(module, "OPTIMIZERS", None)
  for run in runs:  # Fail on a bad setting before training anything.
    if known is not None and run["optimizer"] not in known:
      raise ValueError(
        f"Unknown optimizer {run['optimizer']!r} for {module.__name__}; known: {', '.join(known)}."
      )
    make_config(module, base, **config_point(run))
  resume = resume or count > 1
  if not resume and not overwrite and completed_runs(path):
    raise FileExistsError(
      f"{path} already holds runs. Pass --resume to add the missing runs to it, or"
      " --overwrite to start it over."
    )
  done = completed_runs(path) if resume else set()
  if not resume:
    with open(path, "w", newline="") as f:
      csv.writer(f).writerow(COLUMNS)
  else:
    try:  # Exactly one of several shards starting together writes the header.
      with open(path, "x", newline="") as f:
        csv.writer(f).writerow(COLUMNS)
    except FileExistsError:
      pass
  todo = [r for r in runs[index::count] if run_key(r) not in done]
  print(f"{len(runs)} runs in the grid, {len(done)} already done; {len(todo)} to run, {path}")
  start = time.perf_counter()
  for i, run in enumerate(todo, 1):
    config = make_config(module, base, **config_point(run))
    metrics = module.main(config)
    width = getattr(config, width_field(type(config)))
    rows = history_rows(task, run, width, config, metrics)
    text = io.StringIO()
    csv.writer(text).writerows([[row[c] for c in COLUMNS] for row in rows])
    with open(path, "a", newline="") as f:  # One write: appends from shards do not interleave.
      f.write(text.getvalue())
    elapsed = time.perf_counter() - start
    print(
      f"[{i}/{len(todo)}] {run['optimizer']} lr={run['lr']:.4g} width={width}"
      f" warmup={config.warmup} batch={config.batch_size} radii={run['radii'] or '-'}"
      f" {run['settings']} steps={config.steps}"
      f" seed={run['seed']}:"
      f" eval loss {metrics['final_eval_loss']:.4f} ({metrics['seconds']:.1f}s;"
      f" {elapsed / 60:.1f} min so far, ~{elapsed / i * (len(todo) - i) / 60:.1f} min left)",
      flush=True,
    )
  return path


def select_runs(runs: list[dict], only: Mapping[str, Sequence]) -> list[dict]:
  """The runs whose ``field`` is one of ``only[field]``, for every field (numbers compared as
  numbers, so ``steps=800.0`` selects 800)."""
  for field, values in only.items():
    if field not in KEY:
      raise ValueError(f"--only {field}=...: expected one of {', '.join(KEY)}.")
    text = field in TEXT_FIELDS
    wanted = {
      run_key({field: v if text or not isinstance(v, str) else parse_number(v)}, (field,))
      for v in values
    }
    runs = [r for r in runs if run_key(r, (field,)) in wanted]
  return runs


def config_point(run: dict) -> dict:
  """The ``make_config`` settings of one run of ``grid``."""
  point = {k: run[k] for k in ("optimizer", "lr", "width", "warmup", "batch_size", "steps")}
  point |= {"eval_every": run["eval_every"], "seed": run["seed"]}
  if run["radii"]:
    point["radii"] = run["radii"]
  return point | run["values"]


def history_rows(task: str, run: dict, width, config, metrics: dict) -> list[dict]:
  """CSV rows of one run; a final NaN row marks a run that stopped before ``steps``."""
  history = list(metrics["history"])
  if not history or history[-1]["step"] != config.steps:
    history.append({"step": config.steps, "train_loss": math.nan, "eval_loss": math.nan})
  return [
    dict(
      task=task,
      optimizer=run["optimizer"],
      lr=run["lr"],
      width=width,
      warmup=config.warmup,
      batch_size=config.batch_size,
      radii=run["radii"],
      settings=run["settings"],
      seed=run["seed"],
      steps=config.steps,
      step=h["step"],
      train_loss=h["train_loss"],
      eval_loss=h["eval_loss"],
      eval_acc=h.get("eval_acc", ""),
      seconds=round(metrics["seconds"], 3),
    )  # fmt: skip
    for h in history
  ]


# -- reading and plotting -----------------------------------------------------------------------


def read_csv(path: str) -> list[dict]:
  """Rows of a results CSV with numbers parsed (empty cells become None; ``radii`` stays a
  string, ``""`` for the default)."""

  def parse(key, value):
    if key in TEXT_FIELDS:
      return value or ""
    if value == "":
      return None
    number = float(value)
    ints = ("width", "warmup", "batch_size", "steps", "step", "seed")
    return int(number) if key in ints else number

  with open(path, newline="") as f:
    return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def runs_from_rows(rows: list[dict]) -> list[dict]:
  """Groups rows into runs: ``{settings..., "history": [rows], "final": last row's eval_loss}``
  (``final`` is inf for a run that diverged)."""
  runs: dict[tuple, dict] = {}
  for row in rows:
    row.setdefault("radii", "")
    row.setdefault("settings", "")  # CSVs written before the column existed.
    row.setdefault("seed", 0)
    settings = {k: row[k] for k in (*KEY, "task", "steps")}
    runs.setdefault(run_key(row), settings | {"history": []})["history"].append(row)
  for run in runs.values():
    run["history"].sort(key=lambda r: r["step"])
    last = run["history"][-1]
    final = last["eval_loss"] if last["step"] == run["steps"] else None
    run["final"] = final if final is not None and math.isfinite(final) else math.inf
  return list(runs.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  if not values or not all(math.isfinite(v) for v in values):
    return math.inf, math.nan
  mean = sum(values) / len(values)
  if len(values) == 1:
    return mean, math.nan  # No spread to report from one seed.
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def points_from_runs(runs: list[dict]) -> list[dict]:
  """Grid points with their seeds merged: the settings, ``"seeds"``, ``"final"`` (mean final
  held-out loss; inf if any seed diverged), ``"std"`` (over seeds), ``"acc"``/``"acc_std"``
  and ``"history"`` (per evaluation step: the mean and std of the losses over the seeds that
  reached it)."""
  groups: dict[tuple, list[dict]] = defaultdict(list)
  for run in runs:
    groups[run_key(run, POINT)].append(run)
  points = []
  for members in groups.values():
    first = members[0]
    point = {k: first[k] for k in (*POINT, "task", "steps")}
    point["seeds"] = sorted(r["seed"] for r in members)
    point["final"], point["std"] = mean_std([r["final"] for r in members])
    accs = [r["history"][-1].get("eval_acc") for r in members]
    if all(a is not None for a in accs) and math.isfinite(point["final"]):
      point["acc"], point["acc_std"] = mean_std(accs)
    steps = sorted({h["step"] for r in members for h in r["history"]})
    history = []
    for step in steps:
      at = [h for r in members for h in r["history"] if h["step"] == step]
      entry = {"step": step}
      for name in ("train_loss", "eval_loss"):
        values = [h[name] for h in at if h[name] is not None]
        entry[name], entry[name + "_std"] = mean_std(values) if values else (None, None)
      history.append(entry)
    point["history"] = history
    points.append(point)
  return points


def base_values(runs: list[dict]) -> dict:
  """The most frequent setting of each axis, and the most frequent steps: the settings held
  fixed in each plot."""
  return {k: Counter(r[k] for r in runs).most_common(1)[0][0] for k in (*AXES, "steps")}


def best_runs(points: list[dict]) -> dict[str, dict]:
  """Per optimizer, its point with the lowest final held-out loss (mean over seeds) among the
  base-setting points."""
  base = base_values(points)
  best: dict[str, dict] = {}
  for point in points:
    if all(point[k] == v for k, v in base.items()):
      if point["optimizer"] not in best or point["final"] < best[point["optimizer"]]["final"]:
        best[point["optimizer"]] = point
  return best


def _optimizer_order(names) -> list[str]:
  known = [o for o in ALL_OPTIMIZERS + VARIANT_ORDER if o in names]
  return known + sorted(set(names) - set(known))


def _seeds(point: dict) -> str:
  n = len(point["seeds"])
  return f"{n} seed{'s' * (n != 1)}"


def plot_curves(points: list[dict], path: str) -> None:
  import matplotlib.pyplot as plt

  best, base = best_runs(points), base_values(points)
  fig, ax = plt.subplots(figsize=(7, 4.2))
  # Ten distinct default colours; tab20 beyond that (the variants' grids draw twelve).
  colors = [f"C{i}" for i in range(10)] if len(best) <= 10 else plt.get_cmap("tab20").colors
  for i, name in enumerate(_optimizer_order(best)):
    point = best[name]
    hist = [h for h in point["history"] if h["eval_loss"] is not None]
    steps = [h["step"] for h in hist]
    mean = [h["eval_loss"] for h in hist]
    std = [h["eval_loss_std"] if math.isfinite(h["eval_loss_std"] or math.nan) else 0 for h in hist]
    color = colors[i % len(colors)]
    label = f"{name} (lr {point['lr']:.3g}, {_seeds(point)})"
    ax.plot(steps, mean, color=color, label=label)
    ax.fill_between(
      steps, [m - s for m, s in zip(mean, std, strict=True)],
      [m + s for m, s in zip(mean, std, strict=True)], color=color, alpha=0.2, lw=0,
    )  # fmt: skip
    train = [h["train_loss"] for h in hist]
    ax.plot(steps, train, color=color, ls="--", lw=0.9)
  ax.set(xlabel="step", ylabel="loss (solid: held-out ± std, dashed: train)", yscale="log")
  task = points[0]["task"]
  ax.set_title(f"{task}: each optimizer at its best learning rate\n({_describe(base)})")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)


def _describe(values: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in values.items() if v not in (None, ""))


def _sweep(points: list[dict], axis: str) -> tuple[dict, dict[str, list[dict]], list[str]]:
  """The points that vary ``axis`` only: the other settings held at their base value, those
  points per optimizer, and the optimizers (in display order) with more than one ``axis``
  value."""
  # A batch-size sweep with the same examples changes the steps with the batch size.
  free = {axis, "steps"} if axis == "batch_size" else {axis}
  held = {k: v for k, v in base_values(points).items() if k not in free}
  by_opt = defaultdict(list)
  for p in points:
    if all(p[k] == v for k, v in held.items()):
      by_opt[p["optimizer"]].append(p)
  names = [n for n in _optimizer_order(by_opt) if len({p[axis] for p in by_opt[n]}) > 1]
  return held, by_opt, names


def _reference(points: list[dict], axis: str):
  """The ``axis`` value whose best learning rate the sweep table reuses at the others: the
  narrowest width (the proxy), the base value of any other axis."""
  if axis == "width":
    return min(p["width"] for p in points)
  return base_values(points)[axis]


def plot_lr_sweep(points: list[dict], axis: str, path: str) -> bool:
  """Final held-out loss (mean ± std over seeds) against learning rate, a panel per optimizer,
  a line per ``axis`` value (others at their base value); False (no file) if ``axis`` takes
  one value only."""
  import matplotlib.pyplot as plt

  held, by_opt, names = _sweep(points, axis)
  if not names:
    return False
  points = [p for group in by_opt.values() for p in group]
  values = sorted({p[axis] for p in points})
  finite = [p["final"] for p in points if math.isfinite(p["final"])]
  first = [p["history"][0]["eval_loss"] for p in points if p["history"][0]["eval_loss"]]
  top = max([f for f in first if math.isfinite(f)] or finite or [1.0])  # "did not train" line
  width = max(6.5, 4 * len(names)) + (3.5 if len(values) > 4 else 1.5)  # The legend.
  fig, axes = plt.subplots(1, len(names), figsize=(width, 4.2), squeeze=False)
  for ax, name in zip(axes[0], names, strict=True):
    for i, value in enumerate(values):
      pts = sorted((p["lr"], p["final"], p["std"]) for p in by_opt[name] if p[axis] == value)
      if not pts:
        continue
      lrs = [p[0] for p in pts]
      losses = [min(p[1], top) for p in pts]
      errs = [p[2] if math.isfinite(p[1]) and math.isfinite(p[2]) else 0 for p in pts]
      style = "o-" if i < 10 else "s--"  # Ten colours, then dashed lines.
      ax.errorbar(lrs, losses, yerr=errs, fmt=style, color=f"C{i % 10}", ms=3, capsize=2,
                  label=f"{axis} {value or 'default'}")  # fmt: skip
      j = min(range(len(pts)), key=lambda j: pts[j][1])
      if math.isfinite(pts[j][1]):
        ax.plot(lrs[j], losses[j], "*", color=f"C{i % 10}", ms=12)
    ax.set(yscale="log", xlabel="learning rate", title=name)
    ax.set_xscale("log", base=2)
  axes[0][0].set_ylabel("final held-out loss, mean ± std (★ best)")
  axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
  fig.suptitle(f"{points[0]['task']}: learning rate vs {axis}\n({_describe(held)})")
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)
  return True


def _pm(mean, std) -> str:
  if mean is None or not math.isfinite(mean):
    return "diverged"
  return f"{mean:.4f} ± {std:.4f}" if std is not None and math.isfinite(std) else f"{mean:.4f}"


def summary_table(points: list[dict]) -> str:
  """Markdown: per optimizer, the best learning rate and its final metrics (base settings),
  mean ± std over seeds."""
  best = best_runs(points)
  acc = any("acc" in p for p in best.values())
  head = "| optimizer | best lr | seeds | final train loss | final held-out loss |"
  head += " held-out accuracy |" if acc else ""
  lines = [head, "|" + "---|" * (5 + acc)]
  for name in _optimizer_order(best):
    point = best[name]
    last = point["history"][-1]
    cells = [name, f"{point['lr']:.4g}", str(len(point["seeds"]))]
    cells += [_pm(last["train_loss"], last["train_loss_std"]), _pm(point["final"], point["std"])]
    if acc:
      cells.append(_pm(point.get("acc"), point.get("acc_std")))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def steps_to_reach(history: list[dict], target: float) -> float | None:
  """The first step at which the mean held-out loss reaches ``target`` (linear between
  evaluations), or None if it never does."""
  prev = None
  for h in history:
    loss = h["eval_loss"]
    if loss is None or not math.isfinite(loss):
      return None
    if loss <= target:
      if prev is None:
        return float(h["step"])
      (s0, l0), s1 = prev, h["step"]
      return s0 + (s1 - s0) * (l0 - target) / (l0 - loss) if l0 != loss else float(s1)
    prev = (h["step"], loss)
  return None


def speed_table(points: list[dict]) -> str | None:
  """Markdown: for each pair of optimizers at their best learning rates, the fraction of the
  other's steps one needs to reach the other's final held-out loss (mean curves)."""
  best = best_runs(points)
  names = [n for n in _optimizer_order(best) if math.isfinite(best[n]["final"])]
  if len(names) < 2:
    return None
  lines = [
    "| optimizer | reaches the final held-out loss of | at step | fraction of its steps |",
    "|---|---|---|---|",
  ]
  for a in names:
    for b in names:
      if a == b:
        continue
      step = steps_to_reach(best[a]["history"], best[b]["final"])
      frac = "–" if step is None else f"{step / best[b]['steps']:.2f}"
      lines.append(f"| {a} | {b} ({best[b]['final']:.4f}) | {_fmt_step(step)} | {frac} |")
  return "\n".join(lines) + "\n"


def _fmt_step(step: float | None) -> str:
  return "never" if step is None else f"{step:.0f}"


def sweep_table(points: list[dict], axis: str) -> str | None:
  """Markdown: per optimizer and ``axis`` value (others at their base value), the best learning
  rate and its final held-out loss, and the loss at the reference value's best learning rate
  (what reusing a tuned rate costs; the reference is the narrowest width, or the base value of
  another axis). None if ``axis`` takes one value only."""
  ref = _reference(points, axis)
  _, by_opt, names = _sweep(points, axis)
  if not names:
    return None
  lines = [
    f"| optimizer | {axis} | best lr | held-out loss | loss at the {axis} {ref or 'default'} best"
    " lr | cost of reusing it |",
    "|---|---|---|---|---|---|",
  ]
  for name in names:
    at = lambda value, mine=by_opt[name]: [p for p in mine if p[axis] == value]
    if not at(ref):
      continue
    tuned = min(at(ref), key=lambda p: p["final"])
    for value in sorted({p[axis] for p in by_opt[name]}):
      best = min(at(value), key=lambda p: p["final"])
      reused = [p for p in at(value) if p["lr"] == tuned["lr"]]
      cells = [name, str(value or "default"), f"{best['lr']:.4g}", _pm(best["final"], best["std"])]
      if reused:
        cells.append(_pm(reused[0]["final"], reused[0]["std"]))
        cost = reused[0]["final"] / best["final"] - 1 if math.isfinite(best["final"]) else math.nan
        cells.append(f"{100 * cost:+.1f}%" if math.isfinite(cost) else "–")
      else:
        cells += ["–", "–"]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def steps_to_match(curve: Mapping[int, float], loss: float) -> tuple[float, str]:
  """The steps a reference optimizer needs to reach ``loss``, read off its loss-vs-budget
  ``curve`` (``{budget in steps: its best mean final held-out loss there}``), linearly in
  log(steps) between its budgets.

  Returns ``(steps, "=")``, or a bound: ``(largest budget, ">")`` when ``loss`` is below the
  curve at every budget (the reference needs more steps than it was run for; how many is not
  extrapolated), ``(smallest budget, "<")`` when ``loss`` is already reached at the smallest.
  The first budget whose loss reaches ``loss`` is the crossing (a curve need not be monotone).
  """
  budgets = sorted(b for b, v in curve.items() if math.isfinite(v))
  if not budgets or not math.isfinite(loss):
    return math.nan, "?"
  for i, b in enumerate(budgets):
    if curve[b] <= loss:
      if curve[b] == loss:
        return float(b), "="
      if i == 0:
        return float(b), "<"
      lo, l0, l1 = budgets[i - 1], curve[budgets[i - 1]], curve[b]
      t = (l0 - loss) / (l0 - l1)
      return math.exp(math.log(lo) + t * (math.log(b) - math.log(lo))), "="
  return float(budgets[-1]), ">"


def speedup(curve: Mapping[int, float], loss: float, steps: int) -> tuple[float, str]:
  """``(ratio, relation)``: the reference's steps to reach ``loss`` (:func:`steps_to_match`)
  over ``steps``, the optimizer's own; ``relation`` is ``"="``, or ``">"``/``"<"`` for a
  bound."""
  matched, relation = steps_to_match(curve, loss)
  return matched / steps, relation


def _ratio(ratio: float, relation: str) -> str:
  if not math.isfinite(ratio):
    return "–"
  return f"{ratio:.2f}×" if relation == "=" else f"{relation} {ratio:.2f}×"


def budget_curves(points: list[dict]) -> dict[int, dict[str, dict[int, dict]]]:
  """``{width: {optimizer: {steps: point}}}``: at each width and budget, each optimizer's
  tuned point (lowest mean final held-out loss over everything it ran there), at the most
  frequent batch size (a batch-size sweep changes the steps, not the budget)."""
  curves: dict = defaultdict(lambda: defaultdict(dict))
  batch = base_values(points)["batch_size"] if points else None
  for p in (p for p in points if p["batch_size"] == batch):
    at = curves[p["width"]][p["optimizer"]]
    if p["steps"] not in at or p["final"] < at[p["steps"]]["final"]:
      at[p["steps"]] = p
  return curves


def budget_table(points: list[dict], references: Sequence[str] = ("adamw", "muon")) -> str | None:
  """Markdown: per width, optimizer and budget, the tuned point's settings and final held-out
  loss, and its speedup over each reference optimizer (:func:`speedup` on the reference's own
  curve at that width). None unless some optimizer ran at more than one budget."""
  curves = budget_curves(points)
  if not any(len(c) > 1 for by_opt in curves.values() for c in by_opt.values()):
    return None
  head = "| width | optimizer | steps | lr | warmup | settings | held-out loss |"
  head += "".join(f" speedup vs {r} |" for r in references)
  lines = [head, "|" + "---|" * (7 + len(references))]
  for width in sorted(curves):
    by_opt = curves[width]
    ref_curves = {
      r: {b: p["final"] for b, p in by_opt[r].items()} for r in references if r in by_opt
    }
    for name in _optimizer_order(by_opt):
      for steps, p in sorted(by_opt[name].items()):
        cells = [
          str(width), name, str(steps), _lr(p["lr"]), _warmup(p["warmup"], steps),
          p["settings"] or "–", _pm(p["final"], p["std"]),
        ]  # fmt: skip
        for r in references:
          ratio = speedup(ref_curves[r], p["final"], steps) if r in ref_curves else (math.nan, "")
          cells.append(_ratio(*ratio))
        lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_budgets(points: list[dict], path: str) -> bool:
  """Final held-out loss (tuned at each budget, mean ± std over seeds) against the budget, a
  panel per width, a line per optimizer; False (no file) unless some optimizer ran at more than
  one budget."""
  import matplotlib.pyplot as plt

  curves = budget_curves(points)
  widths = [w for w in sorted(curves) if any(len(c) > 1 for c in curves[w].values())]
  if not widths:
    return False
  fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths) + 2, 4.2), squeeze=False)
  names = _optimizer_order({n for w in widths for n in curves[w]})
  for ax, width in zip(axes[0], widths, strict=True):
    for i, name in enumerate(names):
      pts = sorted(curves[width].get(name, {}).items())
      pts = [(b, p) for b, p in pts if math.isfinite(p["final"])]
      if not pts:
        continue
      steps = [b for b, _ in pts]
      losses = [p["final"] for _, p in pts]
      errs = [p["std"] if math.isfinite(p["std"]) else 0 for _, p in pts]
      ax.errorbar(steps, losses, yerr=errs, fmt="o-", color=f"C{i % 10}", ms=4, capsize=2,
                  label=name)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set(xlabel="budget (steps)", title=f"width {width}")
  axes[0][0].set_ylabel("final held-out loss, tuned per budget (mean ± std)")
  axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
  fig.suptitle(f"{points[0]['task']}: loss against training budget")
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)
  return True


def points_table(points: list[dict]) -> str:
  """Markdown: every grid point, per optimizer from best to worst (mean final held-out loss
  over seeds; diverged last), with all its settings: the record a coordinate-descent stage
  reads its winners from."""
  lines = [
    "| optimizer | width | steps | lr | warmup | radii | settings | seeds | held-out loss |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  by_opt = defaultdict(list)
  for p in points:
    by_opt[p["optimizer"]].append(p)
  for name in _optimizer_order(by_opt):
    ranked = sorted(by_opt[name], key=lambda p: (p["final"], p["width"], p["steps"], p["lr"]))
    for p in ranked:
      cells = [
        name, str(p["width"]), str(p["steps"]), _lr(p["lr"]), _warmup(p["warmup"], p["steps"]),
        p["radii"] or "default", p["settings"] or "–", str(len(p["seeds"])),
        _pm(p["final"], p["std"]),
      ]  # fmt: skip
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _lr(lr: float) -> str:
  """``2^-7`` for a power of 2, else ``%.4g``."""
  e = math.log2(lr) if lr > 0 else math.nan
  return f"2^{e:.0f}" if math.isfinite(e) and e == round(e) else f"{lr:.4g}"


def _warmup(steps: int, total: int) -> str:
  return f"{steps} ({100 * steps / total:.0f}%)" if steps else "0"


def replot(csv_paths: str | Sequence[str], out_dir: str | None = None) -> list[str]:
  """Draws every plot and the summary from one or more results CSVs; returns the files."""
  import matplotlib

  matplotlib.use("Agg")
  csv_paths = [csv_paths] if isinstance(csv_paths, str) else list(csv_paths)
  rows = [row for path in csv_paths for row in read_csv(path)]
  points = points_from_runs(runs_from_rows(rows))
  if not points:
    raise ValueError(f"{', '.join(csv_paths)} hold(s) no runs.")
  out_dir = out_dir or os.path.dirname(os.path.abspath(csv_paths[0]))
  os.makedirs(out_dir, exist_ok=True)
  written = [os.path.join(out_dir, "curves.png")]
  plot_curves(points, written[0])
  for axis in AXES:
    path = os.path.join(out_dir, f"lr_{axis}.png")
    if plot_lr_sweep(points, axis, path):
      written.append(path)
  path = os.path.join(out_dir, "budgets.png")
  if plot_budgets(points, path):
    written.append(path)
  path = os.path.join(out_dir, "summary.md")
  tables = [summary_table(points)]
  tables += filter(None, [speed_table(points)] + [sweep_table(points, axis) for axis in AXES])
  tables += filter(None, [budget_table(points)])
  with open(path, "w") as f:
    f.write("\n".join(tables))
  written.append(path)
  path = os.path.join(out_dir, "points.md")
  with open(path, "w") as f:
    f.write(points_table(points))
  written.append(path)
  return written


# -- command line -------------------------------------------------------------------------------


def parse_lrs(specs: Sequence[str], optimizers: Sequence[str]) -> dict[str, tuple[float, ...]]:
  """``["0.01,0.1"]`` (every optimizer) or ``["scion=2**-6,2**-4", "adamw=1e-3"]``."""
  lrs: dict[str, tuple[float, ...]] = {}
  for spec in specs:
    name, _, values = spec.rpartition("=")
    numbers = tuple(parse_number(v) for v in values.split(",") if v)
    for target in [name] if name else optimizers:
      if target not in optimizers:
        raise ValueError(f"--lrs names {target!r}, which is not in --optimizers {optimizers}.")
      lrs[target] = numbers
  missing = [o for o in optimizers if o not in lrs]
  if missing:
    raise ValueError(f"No --lrs for {', '.join(missing)}; give 'NAME=lr1,lr2' or plain 'lr1,lr2'.")
  return lrs


def parse_setting(text: str, config_cls) -> tuple[str, object]:
  """``"dataset=digits"`` to ``("dataset", "digits")``, typed by the Config field."""
  key, sep, value = text.partition("=")
  default = {f.name: f.default for f in dataclasses.fields(config_cls)}
  if not sep or key not in default:
    raise ValueError(f"--set {text!r}: expected FIELD=VALUE with FIELD one of {sorted(default)}.")
  if value.lower() == "none":
    return key, None
  kind = type(default[key])
  if kind is bool:
    return key, value.lower() in ("1", "true", "yes")
  if kind is int:
    return key, int(value)
  if kind is float or default[key] is None and value[:1].isdigit():
    return key, parse_number(value)
  return key, value


def parse_sweeps(specs: Sequence[str], config_cls) -> dict[str, tuple]:
  """``["b2=0.95,0.999", "weight_decay=0,0.1"]`` to ``{"b2": (0.95, 0.999), ...}``, each
  value typed by the Config field (as ``--set``)."""
  sweeps = {}
  for spec in specs:
    key, sep, values = spec.partition("=")
    if not sep or not values:
      raise ValueError(f"--sweep {spec!r}: expected FIELD=V1,V2,... (e.g. b2=0.95,0.999).")
    sweeps[key] = tuple(parse_setting(f"{key}={v}", config_cls)[1] for v in values.split(","))
  return sweeps


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--preset",
    choices=sorted(PRESETS),
    help="a named grid of examples/grids.py (the measurements of docs/experiments.md)",
  )
  p.add_argument("--task", choices=sorted(TASKS), help="image or gpt (set by --preset)")
  p.add_argument("--optimizers", default=",".join(ALL_OPTIMIZERS), help="comma-separated")
  p.add_argument("--lrs", nargs="+", default=None, help="'lr1,lr2' or 'NAME=lr1,lr2' ...")
  p.add_argument("--widths", default="", help="comma-separated; empty: the task's default")
  p.add_argument(
    "--warmups", default="0", help="comma-separated warmups: steps, or fractions of the steps (<1)"
  )
  p.add_argument("--budgets", default="", help="comma-separated steps; empty: the base config's")
  p.add_argument(
    "--sweep", action="append", default=[], metavar="FIELD=V1,V2,...",
    help="another Config field to sweep (repeatable), e.g. --sweep b2=0.95,0.999",
  )  # fmt: skip
  p.add_argument("--batch-sizes", default="", help="comma-separated; empty: the task's default")
  p.add_argument(
    "--radii", nargs="+", default=None, metavar="LABEL=R,...",
    help="Scion radius settings to sweep, each 'label=value,...' (e.g. 'hidden=3,head=10')",
  )  # fmt: skip
  p.add_argument("--seeds", default="0", help="comma-separated seeds, each point runs per seed")
  p.add_argument("--shard", default="0/1", metavar="K/N", help="run every N-th run from the K-th")
  p.add_argument(
    "--only", action="append", default=[], metavar="FIELD=V1,V2,...",
    help="run only the grid's runs with these values (repeatable), e.g. --only steps=200",
  )  # fmt: skip
  p.add_argument(
    "--set", action="append", default=[], metavar="FIELD=VALUE",
    help="a Config field for every run (repeatable), e.g. --set steps=300",
  )  # fmt: skip
  p.add_argument("--out-dir", default=None, help="default: runs/compare_<preset or task>")
  p.add_argument("--resume", action="store_true", help="skip runs already complete in the CSV")
  p.add_argument("--overwrite", action="store_true", help="start an existing CSV over")
  p.add_argument("--replot", nargs="+", metavar="CSV", help="only redraw the plots of these CSVs")
  return p


def main(argv: Sequence[str] | None = None) -> list[str]:
  """Runs the grid (or only ``--replot``) and returns the files written."""
  args = build_parser().parse_args(argv)
  if args.replot:
    files = replot(args.replot, args.out_dir)
    print("wrote " + ", ".join(files))
    return files
  ints = lambda text: [int(v) for v in text.split(",") if v] or [None]
  if args.preset:
    preset = PRESETS[args.preset]
    if args.task and args.task != preset["task"]:
      raise ValueError(
        f"--preset {args.preset} is a {preset['task']} grid, not --task {args.task}."
      )
    task, base, sweeps = preset["task"], dict(preset["base"]), preset["sweeps"]
  else:
    if not args.task or not args.lrs:
      raise ValueError("Give --preset NAME, or --task and --lrs (see --help).")
    optimizers = [o for o in args.optimizers.split(",") if o]
    task, base = args.task, {}
    sweeps = [
      Sweep(
        parse_lrs(args.lrs, optimizers),
        widths=ints(args.widths),
        warmups=[parse_number(w) for w in args.warmups.split(",") if w] or [0],
        batch_sizes=ints(args.batch_sizes),
        radii=args.radii or [None],
        seeds=[int(v) for v in args.seeds.split(",") if v],
        steps=ints(args.budgets),
      )
    ]
  module = load_task(task)
  if args.sweep:
    if args.preset:
      raise ValueError("--sweep adds an axis to a grid given by flags, not to a --preset.")
    sweeps[0].settings = parse_sweeps(args.sweep, module.Config)
  base |= dict(parse_setting(s, module.Config) for s in args.set)
  out_dir = args.out_dir or os.path.join("runs", f"compare_{args.preset or task}")
  index, _, count = args.shard.partition("/")
  shard = (int(index), int(count or 1))
  only = {}
  for spec in args.only:
    key, sep, values = spec.partition("=")
    if not sep or not values:
      raise ValueError(f"--only {spec!r}: expected FIELD=V1,V2,... (e.g. steps=200).")
    only[key] = values.split(",")
  path = run_grid(
    module, task, base, sweeps, out_dir, resume=args.resume, shard=shard,
    overwrite=args.overwrite, only=only,
  )  # fmt: skip
  files = [path, *replot(path)]
  print("wrote " + ", ".join(files))
  return files


if __name__ == "__main__":
  main()
