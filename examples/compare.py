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

The CSV (``results.csv``) has one row per run per evaluation point: ``task, optimizer, lr,
width, warmup, batch_size, steps, step, train_loss, eval_loss, eval_acc, seconds`` (``eval_acc``
empty for the GPT; ``seconds`` is the run's wall time, repeated on its rows). A run's last row
has ``step == steps``; a run that diverged gets that row with NaN losses. Plots compare runs
that differ in one setting only: the others are held at their most frequent value.

Run::

  python examples/compare.py --preset smoke                    # 14 tiny runs, 1-2 minutes
  python examples/compare.py --preset fashion_mnist --out-dir results/fashion_mnist
  python examples/compare.py --preset shakespeare --out-dir results/shakespeare
  python examples/compare.py --task image --optimizers scion,adamw --lrs 2**-8,2**-6,2**-4 \\
      --widths 64,256 --set dataset=digits --set steps=300
  python examples/compare.py --replot results/fashion_mnist/results.csv

``--resume`` skips the runs already complete in the CSV, so a stopped grid picks up where it
left off.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import itertools
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from types import ModuleType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TASKS = {"image": "image_classification", "gpt": "char_gpt"}
COLUMNS = (
  "task", "optimizer", "lr", "width", "warmup", "batch_size", "steps",
  "step", "train_loss", "eval_loss", "eval_acc", "seconds",
)  # fmt: skip
KEY = ("optimizer", "lr", "width", "warmup", "batch_size")
ALL_OPTIMIZERS = ("scion", "uscion", "muon", "optax_muon", "adamw")


def pow2(lo: int, hi: int) -> tuple[float, ...]:
  """``(2**lo, 2**(lo+1), ..., 2**hi)``."""
  return tuple(2.0**e for e in range(lo, hi + 1))


@dataclasses.dataclass
class Sweep:
  """One block of the grid: the product of its optimizers' learning rates and the other axes.

  ``None`` in ``widths`` or ``batch_sizes`` means the task's default. With
  ``same_examples``, a run at batch size ``b`` takes ``steps · base / b`` steps (``base`` the
  base config's batch size), so every batch size sees the same number of examples.
  """

  lrs: dict[str, Sequence[float]]  # optimizer -> learning rates
  widths: Sequence[int | None] = (None,)
  warmups: Sequence[int] = (0,)
  batch_sizes: Sequence[int | None] = (None,)
  same_examples: bool = True


# Grids of the README's results. Each preset: task, base config (overrides of the task's Config)
# and sweeps. Scion and Muon spend most of a CPU step in Newton–Schulz, whose cost grows as
# width³ (a 1000-step Fashion-MNIST MLP run took 15 s at width 128, 313 s at width 512), hence
# 500 steps and widths up to 256. Measured per run of 500 steps on 2 CPU cores shared with other
# jobs (load ~6.5), wall time incl. compilation: scion 128: 33 s (first run) / ~20 s, uscion
# 13 s, adamw 12 s, scion 256: 39 s, scion 32: 14 s, scion at batch 1024 (62 steps): 10 s.
# The fashion_mnist preset (104 runs) took 21 minutes there (results/fashion_mnist).
IMAGE_LRS = {
  "scion": pow2(-9, -3),
  "uscion": pow2(-12, -3),
  "muon": pow2(-10, -4),
  "optax_muon": pow2(-10, -4),
  "adamw": pow2(-13, -5),
}
# Powers of 2 around char_gpt.py's default learning rates (Scion's reach down to where the
# loss turns up again).
GPT_LRS = {
  "scion": pow2(-14, -8),
  "uscion": pow2(-14, -8),
  "muon": pow2(-7, -4),
  "optax_muon": pow2(-7, -4),
  "adamw": pow2(-10, -6),
}


def _only(lrs: dict, *names: str) -> dict:
  return {name: lrs[name] for name in names}


PRESETS = {
  "smoke": dict(
    task="image",
    base=dict(dataset="digits", steps=60, eval_every=20),
    sweeps=[
      Sweep({o: (2**-9, 2**-5) if o != "adamw" else (1e-3, 1e-2) for o in ALL_OPTIMIZERS}),
      Sweep({"scion": (2**-9, 2**-5), "adamw": (1e-3, 1e-2)}, widths=(32,)),
    ],
  ),
  "fashion_mnist": dict(
    task="image",
    base=dict(dataset="fashion_mnist", model="mlp", width=128, steps=500, eval_every=50),
    sweeps=[
      # Every optimizer at width 128 ...
      Sweep(IMAGE_LRS),
      # ... learning-rate transfer across width ...
      Sweep(_only(IMAGE_LRS, "scion", "adamw"), widths=(32, 256)),
      # ... no warmup needed? (50 warmup steps against none) ...
      Sweep(_only(IMAGE_LRS, "scion", "adamw"), warmups=(50,)),
      # ... and a large batch (1024: the same examples in 62 steps).
      Sweep(_only(IMAGE_LRS, "scion", "adamw"), batch_sizes=(1024,)),
    ],
  ),
  "shakespeare": dict(
    # A 2-layer GPT, 200 steps of 32×64 characters: ~75 s a run for Scion/Muon and ~40 s for
    # AdamW on 2 shared CPU cores (100 steps measured: 44 s and 22 s); the 63 runs took 45
    # minutes of run time there, part of it sharing the cores with other jobs.
    task="gpt",
    base=dict(steps=200, eval_every=25, n_layer=2),
    sweeps=[
      Sweep(GPT_LRS),
      Sweep(_only(GPT_LRS, "scion", "adamw"), widths=(64,)),
      Sweep(_only(GPT_LRS, "scion", "adamw"), warmups=(25,)),
      # Batch 128: the same characters in 50 steps.
      Sweep(_only(GPT_LRS, "scion", "adamw"), batch_sizes=(128,)),
    ],
  ),
}


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
    for optimizer, lrs in sweep.lrs.items():
      for lr, width, warmup, batch in itertools.product(
        lrs, sweep.widths, sweep.warmups, sweep.batch_sizes
      ):
        scale = base_batch / batch if (sweep.same_examples and batch) else 1.0
        run = dict(
          optimizer=optimizer, lr=float(lr), width=width or base_width,
          warmup=int(warmup * scale), batch_size=batch or base_batch,
          steps=max(1, round(base_steps * scale)),
          eval_every=max(1, round(base_eval * scale)),
        )  # fmt: skip
        key = run_key(run)
        if key not in seen:
          seen.add(key)
          runs.append(run)
  return runs


def run_key(row: dict) -> tuple:
  """Identifies a run by its grid settings (numbers formatted so CSV round trips match)."""
  fmt = lambda v: "" if v in (None, "") else f"{float(v):.6g}"
  return (row["optimizer"], *(fmt(row[k]) for k in KEY[1:]))


def completed_runs(path: str) -> set:
  if not os.path.isfile(path):
    return set()
  return {run_key(r) for r in read_csv(path) if r["step"] == r["steps"]}


def run_grid(
  module: ModuleType,
  task: str,
  base: dict,
  sweeps: Sequence[Sweep],
  out_dir: str,
  resume: bool = False,
) -> str:
  """Runs every grid point, appending to ``out_dir/results.csv``; returns the CSV's path."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "results.csv")
  runs = grid(module, base, sweeps)
  for run in runs:  # Fail on a bad setting before training anything.
    make_config(module, base, **_config_point(run))
  done = completed_runs(path) if resume else set()
  if not resume or not os.path.isfile(path):
    with open(path, "w", newline="") as f:
      csv.writer(f).writerow(COLUMNS)
  todo = [r for r in runs if run_key(r) not in done]
  print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already done; writing {path}")
  start = time.perf_counter()
  for i, run in enumerate(todo, 1):
    config = make_config(module, base, **_config_point(run))
    metrics = module.main(config)
    width = getattr(config, width_field(type(config)))
    rows = history_rows(task, run, width, config, metrics)
    with open(path, "a", newline="") as f:
      csv.writer(f).writerows([[row[c] for c in COLUMNS] for row in rows])
    elapsed = time.perf_counter() - start
    print(
      f"[{i}/{len(todo)}] {run['optimizer']} lr={run['lr']:.4g} width={width}"
      f" warmup={config.warmup} batch={config.batch_size}:"
      f" eval loss {metrics['final_eval_loss']:.4f} ({metrics['seconds']:.1f}s;"
      f" {elapsed / 60:.1f} min so far, ~{elapsed / i * (len(todo) - i) / 60:.1f} min left)",
      flush=True,
    )
  return path


def _config_point(run: dict) -> dict:
  return {k: run[k] for k in ("optimizer", "lr", "width", "warmup", "batch_size", "steps")} | {
    "eval_every": run["eval_every"]
  }


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
  """Rows of a results CSV with numbers parsed (empty cells become None)."""

  def parse(key, value):
    if key in ("task", "optimizer"):
      return value
    if value == "":
      return None
    number = float(value)
    return int(number) if key in ("width", "warmup", "batch_size", "steps", "step") else number

  with open(path, newline="") as f:
    return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def runs_from_rows(rows: list[dict]) -> list[dict]:
  """Groups rows into runs: ``{settings..., "history": [rows], "final": last row's eval_loss}``."""
  runs: dict[tuple, dict] = {}
  for row in rows:
    settings = {k: row[k] for k in (*KEY, "task", "steps")}
    runs.setdefault(run_key(row), settings | {"history": []})["history"].append(row)
  for run in runs.values():
    run["history"].sort(key=lambda r: r["step"])
    last = run["history"][-1]
    final = last["eval_loss"] if last["step"] == run["steps"] else None
    run["final"] = final if final is not None and math.isfinite(final) else math.inf
  return list(runs.values())


def base_values(runs: list[dict]) -> dict:
  """The most frequent width, warmup and batch size: the settings held fixed in each plot."""
  return {
    k: Counter(r[k] for r in runs).most_common(1)[0][0] for k in ("width", "warmup", "batch_size")
  }


def best_runs(runs: list[dict]) -> dict[str, dict]:
  """Per optimizer, its run with the lowest final held-out loss among the base-setting runs."""
  base = base_values(runs)
  best: dict[str, dict] = {}
  for run in runs:
    if all(run[k] == v for k, v in base.items()):
      if run["optimizer"] not in best or run["final"] < best[run["optimizer"]]["final"]:
        best[run["optimizer"]] = run
  return best


def _optimizer_order(names) -> list[str]:
  known = [o for o in ALL_OPTIMIZERS if o in names]
  return known + sorted(set(names) - set(known))


def plot_curves(runs: list[dict], path: str) -> None:
  import matplotlib.pyplot as plt

  best, base = best_runs(runs), base_values(runs)
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for i, name in enumerate(_optimizer_order(best)):
    run = best[name]
    steps = [r["step"] for r in run["history"]]
    color = f"C{i}"
    label = f"{name} (lr {run['lr']:.3g})"
    ax.plot(steps, [r["eval_loss"] for r in run["history"]], color=color, label=label)
    ax.plot(steps, [r["train_loss"] for r in run["history"]], color=color, ls="--", lw=0.9)
  ax.set(xlabel="step", ylabel="loss (solid: held-out, dashed: train)", yscale="log")
  task = runs[0]["task"]
  ax.set_title(f"{task}: each optimizer at its best learning rate\n({_describe(base)})")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)


def _describe(values: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in values.items() if v is not None)


def _sweep(runs: list[dict], axis: str) -> tuple[dict, dict[str, list[dict]], list[str]]:
  """The runs that vary ``axis`` only: the other settings held at their base value, those runs
  per optimizer, and the optimizers (in display order) with more than one ``axis`` value."""
  held = {k: v for k, v in base_values(runs).items() if k != axis}
  by_opt = defaultdict(list)
  for r in runs:
    if all(r[k] == v for k, v in held.items()):
      by_opt[r["optimizer"]].append(r)
  names = [n for n in _optimizer_order(by_opt) if len({r[axis] for r in by_opt[n]}) > 1]
  return held, by_opt, names


def plot_lr_sweep(runs: list[dict], axis: str, path: str) -> bool:
  """Final held-out loss against learning rate, a panel per optimizer, a line per ``axis``
  value (others at their base value); False (no file) if ``axis`` takes one value only."""
  import matplotlib.pyplot as plt

  held, by_opt, names = _sweep(runs, axis)
  if not names:
    return False
  runs = [r for group in by_opt.values() for r in group]
  values = sorted({r[axis] for r in runs})
  finite = [r["final"] for r in runs if math.isfinite(r["final"])]
  first = [r["history"][0]["eval_loss"] for r in runs if r["history"][0]["eval_loss"] is not None]
  top = max([f for f in first if math.isfinite(f)] or finite or [1.0])  # "did not train" line
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
  for ax, name in zip(axes[0], names, strict=True):
    for i, value in enumerate(values):
      pts = sorted((r["lr"], r["final"]) for r in by_opt[name] if r[axis] == value)
      if not pts:
        continue
      lrs = [p[0] for p in pts]
      losses = [min(p[1], top) for p in pts]
      ax.plot(lrs, losses, "o-", color=f"C{i}", ms=3, label=f"{axis} {value}")
      j = min(range(len(pts)), key=lambda j: pts[j][1])
      if math.isfinite(pts[j][1]):
        ax.plot(lrs[j], losses[j], "*", color=f"C{i}", ms=12)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", title=name)
    ax.set_xscale("log", base=2)
  axes[0][0].set_ylabel("final held-out loss (★ best)")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle(f"{runs[0]['task']}: learning rate vs {axis} ({_describe(held)})")
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)
  return True


def summary_table(runs: list[dict]) -> str:
  """Markdown: per optimizer, the best learning rate and its final metrics (base settings)."""
  best = best_runs(runs)
  acc = any(r["history"][-1].get("eval_acc") is not None for r in runs)
  head = "| optimizer | best lr | final train loss | final held-out loss |"
  head += " held-out accuracy |" if acc else ""
  lines = [head, "|" + "---|" * (4 + acc)]
  for name in _optimizer_order(best):
    last = best[name]["history"][-1]
    cells = [name, f"{best[name]['lr']:.4g}", _fmt(last["train_loss"]), _fmt(last["eval_loss"])]
    if acc:
      cells.append(_fmt(last.get("eval_acc")))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def sweep_table(runs: list[dict], axis: str) -> str | None:
  """Markdown: per optimizer and ``axis`` value (others at their base value), the best learning
  rate, its final held-out loss, and the loss at the base setting's best learning rate (what
  reusing the tuned rate costs). None if ``axis`` takes one value only."""
  base = base_values(runs)
  _, by_opt, names = _sweep(runs, axis)
  if not names:
    return None
  lines = [
    f"| optimizer | {axis} | best lr | held-out loss | loss at the {axis} {base[axis]} best lr |",
    "|---|---|---|---|---|",
  ]
  for name in names:
    at = lambda value, mine=by_opt[name]: [r for r in mine if r[axis] == value]
    tuned = min(at(base[axis]), key=lambda r: r["final"])
    for value in sorted({r[axis] for r in by_opt[name]}):
      best = min(at(value), key=lambda r: r["final"])
      reused = [r["final"] for r in at(value) if r["lr"] == tuned["lr"]]
      cells = [name, str(value), f"{best['lr']:.4g}", _fmt(best["final"])]
      cells.append(_fmt(reused[0]) if reused else "–")
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _fmt(x) -> str:
  return "–" if x is None or not math.isfinite(x) else f"{x:.4f}"


def replot(csv_path: str, out_dir: str | None = None) -> list[str]:
  """Draws every plot and the summary from a results CSV; returns the files written."""
  import matplotlib

  matplotlib.use("Agg")
  runs = runs_from_rows(read_csv(csv_path))
  if not runs:
    raise ValueError(f"{csv_path} holds no runs.")
  out_dir = out_dir or os.path.dirname(os.path.abspath(csv_path))
  os.makedirs(out_dir, exist_ok=True)
  written = [os.path.join(out_dir, "curves.png")]
  plot_curves(runs, written[0])
  for axis in ("width", "warmup", "batch_size"):
    path = os.path.join(out_dir, f"lr_{axis}.png")
    if plot_lr_sweep(runs, axis, path):
      written.append(path)
  path = os.path.join(out_dir, "summary.md")
  tables = [summary_table(runs)]
  tables += filter(None, (sweep_table(runs, axis) for axis in ("width", "warmup", "batch_size")))
  with open(path, "w") as f:
    f.write("\n".join(tables))
  written.append(path)
  return written


# -- command line -------------------------------------------------------------------------------


def parse_number(text: str) -> float:
  """``"0.01"``, ``"1e-3"`` or ``"2**-6"``."""
  if "**" in text:
    base, exponent = text.split("**")
    return float(base) ** float(exponent)
  return float(text)


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


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--preset", choices=sorted(PRESETS), help="a grid of the README's results")
  p.add_argument("--task", choices=sorted(TASKS), help="image or gpt (set by --preset)")
  p.add_argument("--optimizers", default=",".join(ALL_OPTIMIZERS), help="comma-separated")
  p.add_argument("--lrs", nargs="+", default=None, help="'lr1,lr2' or 'NAME=lr1,lr2' ...")
  p.add_argument("--widths", default="", help="comma-separated; empty: the task's default")
  p.add_argument("--warmups", default="0", help="comma-separated warmup steps")
  p.add_argument("--batch-sizes", default="", help="comma-separated; empty: the task's default")
  p.add_argument(
    "--set", action="append", default=[], metavar="FIELD=VALUE",
    help="a Config field for every run (repeatable), e.g. --set steps=300",
  )  # fmt: skip
  p.add_argument("--out-dir", default=None, help="default: runs/compare_<preset or task>")
  p.add_argument("--resume", action="store_true", help="skip runs already complete in the CSV")
  p.add_argument("--replot", metavar="CSV", help="only redraw the plots of this results CSV")
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
        warmups=[w or 0 for w in ints(args.warmups)],
        batch_sizes=ints(args.batch_sizes),
      )
    ]
  module = load_task(task)
  base |= dict(parse_setting(s, module.Config) for s in args.set)
  out_dir = args.out_dir or os.path.join("runs", f"compare_{args.preset or task}")
  path = run_grid(module, task, base, sweeps, out_dir, resume=args.resume)
  files = [path, *replot(path)]
  print("wrote " + ", ".join(files))
  return files


if __name__ == "__main__":
  main()
