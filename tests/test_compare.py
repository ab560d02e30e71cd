"""Tests of examples/compare.py with a stub task (no training) and one tiny real grid."""

import csv
import dataclasses
import math
import types

import pytest
from test_example_image import load_example

compare = load_example("compare")


@dataclasses.dataclass
class StubConfig:
  """The contract of a task: the fields the runner sets, plus one it must leave alone."""

  optimizer: str = "scion"
  lr: float | None = None
  n_embd: int = 64  # The GPT's name for width.
  steps: int = 40
  batch_size: int = 16
  warmup: int = 0
  eval_every: int = 10
  out: str | None = "stub.jsonl"
  plot: str | None = "stub.png"
  progress: bool = True
  sample_len: int = 300
  text: str | None = None
  seed: int = 0
  radii: str | None = None
  b2: float = 0.95


# Each optimizer's best learning rate (the stub's loss is lowest there) and, for "adamw", a
# best learning rate that halves when the width doubles; "scion"'s does not move.
BEST = {"scion": 2**-6, "adamw": 2**-9}


def stub_loss(config, step):
  shift = 0.0 if config.optimizer == "scion" else math.log2(config.n_embd / 64)
  if config.radii == "head=2":  # A radius that halves the best learning rate.
    shift += 1.0
  distance = math.log2(config.lr) - math.log2(BEST[config.optimizer]) + shift
  noise = 0.01 * (config.seed - 1)  # Seeds 0, 1, 2: mean 0, standard deviation 0.01.
  warmup = 0.01 * config.warmup / config.steps
  return 1.0 + 0.1 * distance**2 + 2.0 / step + warmup + abs(config.b2 - 0.95) + noise


def stub_main(config):
  stub_main.calls.append(config)
  if config.lr > 2**-4:  # Diverges: stops early, the final metrics are NaN.
    history = [{"step": 10, "train_loss": float("nan"), "eval_loss": float("nan")}]
    return {"history": history, "final_train_loss": math.nan, "final_eval_loss": math.nan,
            "seconds": 0.1}  # fmt: skip
  history = [
    {"step": s, "train_loss": stub_loss(config, s) + 0.05, "eval_loss": stub_loss(config, s)}
    for s in range(config.eval_every, config.steps + 1, config.eval_every)
  ]
  return {"history": history, "final_train_loss": history[-1]["train_loss"],
          "final_eval_loss": history[-1]["eval_loss"], "seconds": 0.5}  # fmt: skip


@pytest.fixture
def stub():
  stub_main.calls = []
  return types.SimpleNamespace(__name__="stub_task", Config=StubConfig, main=stub_main)


SWEEPS = [
  compare.Sweep({"scion": compare.pow2(-8, -3), "adamw": compare.pow2(-11, -7)}),
  compare.Sweep({"scion": compare.pow2(-8, -4), "adamw": compare.pow2(-11, -7)}, widths=(32, 128)),
  compare.Sweep({"adamw": compare.pow2(-11, -7)}, batch_sizes=(64,)),
]


def test_grid_runs_write_the_csv_and_the_plots(tmp_path, stub):
  path = compare.run_grid(stub, "gpt", {"eval_every": 10}, SWEEPS, str(tmp_path))
  configs = stub_main.calls
  # Distinct runs only: 6 + 5 scion lrs, 5 + 10 adamw lrs at widths 64, 32, 128, 5 at batch 64.
  assert len(configs) == 6 + 5 * 2 + 5 * 3 + 5
  assert all(c.out is None and c.plot is None and not c.progress and c.sample_len == 0
             for c in configs)  # fmt: skip
  assert all(c.text is None for c in configs)  # Untouched.
  big = [c for c in configs if c.batch_size == 64]
  assert {(c.steps, c.eval_every) for c in big} == {(10, 2)}  # Same examples: 40·16/64 steps.

  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == compare.COLUMNS
  final = [r for r in rows if r["step"] == r["steps"]]
  assert len(final) == len(configs)  # Every run, diverged ones included, has a final row.
  diverged = [r for r in final if float(r["lr"]) > 2**-4]
  assert diverged and all(math.isnan(float(r["eval_loss"])) for r in diverged)
  one = [r for r in rows if r["optimizer"] == "scion" and float(r["lr"]) == 2**-6]
  one = [r for r in one if r["width"] == "64"]
  assert [int(r["step"]) for r in one] == [10, 20, 30, 40]
  assert float(one[-1]["eval_loss"]) == pytest.approx(1.0 + 2.0 / 40 - 0.01)  # Seed 0.
  assert {r["eval_acc"] for r in rows} == {""} and {r["task"] for r in rows} == {"gpt"}

  files = compare.replot(path)
  names = sorted(p.rsplit("/", 1)[-1] for p in files)
  assert names == ["curves.png", "lr_batch_size.png", "lr_width.png", "points.md", "summary.md"]
  assert "fraction of its steps" in (tmp_path / "summary.md").read_text()
  for p in files:
    if p.endswith(".png"):
      with open(p, "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_best_learning_rates_and_summary(tmp_path, stub):
  path = compare.run_grid(stub, "gpt", {}, SWEEPS, str(tmp_path))
  runs = compare.points_from_runs(compare.runs_from_rows(compare.read_csv(path)))
  assert compare.base_values(runs) == {
    "width": 64, "warmup": 0, "batch_size": 16, "radii": "", "settings": "", "steps": 40
  }  # fmt: skip
  best = compare.best_runs(runs)
  assert {name: run["lr"] for name, run in best.items()} == BEST
  # Per width, adamw's best learning rate moves (halves per doubling); scion's stays.
  for width, adamw_best in [(32, 2**-8), (128, 2**-10)]:
    at = [r for r in runs if r["width"] == width and r["batch_size"] == 16]
    scion = min((r for r in at if r["optimizer"] == "scion"), key=lambda r: r["final"])
    adamw = min((r for r in at if r["optimizer"] == "adamw"), key=lambda r: r["final"])
    assert (scion["lr"], adamw["lr"]) == (2**-6, adamw_best)
  table = compare.summary_table(runs).splitlines()
  assert table[0].startswith("| optimizer | best lr | seeds") and "accuracy" not in table[0]
  assert table[2].startswith("| scion | 0.01562 | 1 |")
  assert table[3].startswith("| adamw | 0.001953 | 1 |")
  # The width table: best rate per width, and the loss of reusing the narrowest width's rate.
  width = compare.sweep_table(runs, "width").splitlines()
  assert width[0].startswith("| optimizer | width | best lr | held-out loss | loss at the width 32")
  rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line for line in width[2:]}
  assert set(rows) == {
    ("scion", "32", "0.01562"), ("scion", "64", "0.01562"), ("scion", "128", "0.01562"),
    ("adamw", "32", "0.003906"), ("adamw", "64", "0.001953"), ("adamw", "128", "0.0009766"),
  }  # fmt: skip
  cells = [c.strip() for c in rows[("adamw", "128", "0.0009766")].strip("|").split("|")]
  # Width 32's best rate 2**-8 is two octaves off at width 128.
  assert float(cells[4]) == pytest.approx(1.0 + 0.1 * 2.0**2 + 2.0 / 40 - 0.01, abs=1e-4)
  assert cells[5] == f"{100 * ((1.4 + 0.04) / (1.0 + 0.04) - 1):+.1f}%"
  scion_row = [c.strip() for c in rows[("scion", "128", "0.01562")].strip("|").split("|")]
  assert scion_row[5] == "+0.0%"  # Scion's rate transfers.
  assert compare.sweep_table(runs, "warmup") is None  # Not swept.


def test_resume_skips_completed_runs(tmp_path, stub):
  sweeps = [compare.Sweep({"scion": (2**-6, 2**-5)})]
  compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path))
  assert len(stub_main.calls) == 2
  bigger = [compare.Sweep({"scion": (2**-6, 2**-5, 2**-4)})]
  path = compare.run_grid(stub, "gpt", {}, bigger, str(tmp_path), resume=True)
  assert [c.lr for c in stub_main.calls[2:]] == [2**-4]
  runs = compare.runs_from_rows(compare.read_csv(path))
  assert sorted(r["lr"] for r in runs) == [2**-6, 2**-5, 2**-4]


def test_bad_settings_fail_before_training(tmp_path, stub):
  with pytest.raises(ValueError, match="no field"):
    compare.run_grid(stub, "gpt", {"dataset": "digits"}, SWEEPS, str(tmp_path))
  assert stub_main.calls == []
  with pytest.raises(ValueError, match="No --lrs for adamw"):
    compare.parse_lrs(["scion=2**-6"], ["scion", "adamw"])
  assert compare.parse_lrs(["0.1,2**-3"], ["scion", "adamw"]) == {
    "scion": (0.1, 0.125),
    "adamw": (0.1, 0.125),
  }


@pytest.mark.slow
def test_command_line_on_a_real_image_grid(tmp_path):
  files = compare.main([
    "--task", "image", "--optimizers", "adamw", "--lrs", "1e-3,3e-3",
    "--widths", "16,32", "--set", "steps=20", "--set", "eval_every=10", "--set", "batch_size=64",
    "--out-dir", str(tmp_path),
  ])  # fmt: skip
  rows = compare.read_csv(str(tmp_path / "results.csv"))
  assert len(rows) == 4 * 2 and {r["width"] for r in rows} == {16, 32}
  assert {r["lr"] for r in rows} == {1e-3, 3e-3}
  assert all(0 <= r["eval_acc"] <= 1 for r in rows)
  for lr in (1e-3, 3e-3):
    curve = [r["train_loss"] for r in rows if r["lr"] == lr and r["width"] == 32]
    assert curve[-1] < curve[0]
  assert any(f.endswith("lr_width.png") for f in files)
  again = compare.main(
    ["--replot", str(tmp_path / "results.csv"), "--out-dir", str(tmp_path / "re")]
  )
  assert sorted(f.rsplit("/", 1)[-1] for f in again) == [
    "curves.png",
    "lr_width.png",
    "points.md",
    "summary.md",
  ]


def test_seeds_are_averaged_and_radii_swept(tmp_path, stub):
  sweeps = [
    compare.Sweep({"scion": compare.pow2(-8, -4)}, seeds=(0, 1, 2)),
    compare.Sweep({"scion": compare.pow2(-8, -4)}, radii=("head=2",), seeds=(0, 1, 2)),
    compare.Sweep({"adamw": compare.pow2(-11, -7)}, seeds=(0, 1, 2)),
  ]
  path = compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path))
  assert len(stub_main.calls) == 3 * (5 + 5 + 5)
  assert {c.radii for c in stub_main.calls} == {None, "head=2"}
  rows = compare.read_csv(path)
  assert {r["seed"] for r in rows} == {0, 1, 2} and {r["radii"] for r in rows} == {"", "head=2"}
  points = compare.points_from_runs(compare.runs_from_rows(rows))
  assert len(points) == 15 and all(p["seeds"] == [0, 1, 2] for p in points)
  best = compare.best_runs(points)
  assert best["scion"]["final"] == pytest.approx(1.0 + 2.0 / 40)  # The mean over seeds ...
  assert best["scion"]["std"] == pytest.approx(0.01)  # ... and its standard deviation.
  summary = compare.summary_table(points)
  assert "| scion | 0.01562 | 3 | 1.1000 ± 0.0100 | 1.0500 ± 0.0100 |" in summary
  radii = compare.sweep_table(points, "radii").splitlines()
  assert any(line.startswith("| scion | head=2 | 0.007812 |") for line in radii)
  assert any(line.startswith("| scion | default | 0.01562 |") for line in radii)
  files = compare.replot(path)
  assert any(f.endswith("lr_radii.png") for f in files)


def test_speed_table_reads_the_mean_curves():
  history = [{"step": s, "eval_loss": loss} for s, loss in [(10, 3.0), (20, 2.0), (30, 1.5)]]
  assert compare.steps_to_reach(history, 2.5) == pytest.approx(15.0)
  assert compare.steps_to_reach(history, 1.5) == 30.0
  assert compare.steps_to_reach(history, 1.0) is None
  fast = {"optimizer": "scion", "steps": 30, "final": 1.5, "history": history}
  slow_hist = [{"step": s, "eval_loss": 3.5 - 0.05 * s} for s in (10, 20, 30)]
  slow = {"optimizer": "adamw", "steps": 30, "final": 2.0, "history": slow_hist}
  for p in (fast, slow):
    p.update(lr=0.1, width=64, warmup=0, batch_size=16, radii="", settings="", seeds=[0])
  table = compare.speed_table([fast, slow])
  assert "| scion | adamw (2.0000) | 20 | 0.67 |" in table
  assert "| adamw | scion (1.5000) | never | – |" in table


def test_shards_split_the_runs_and_share_the_csv(tmp_path, stub):
  sweeps = [compare.Sweep({"scion": compare.pow2(-8, -4)}, seeds=(0, 1))]
  compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), shard=(0, 2))
  first = len(stub_main.calls)
  path = compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), shard=(1, 2))
  assert first == 5 and len(stub_main.calls) == 10
  runs = compare.runs_from_rows(compare.read_csv(path))
  assert len(runs) == 10  # Each run once, one header.
  with pytest.raises(ValueError, match="shard"):
    compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), shard=(2, 2))


def test_unknown_optimizer_fails_before_training(tmp_path, stub):
  stub.OPTIMIZERS = ("scion", "adamw")
  with pytest.raises(ValueError, match="Unknown optimizer 'scoin'"):
    compare.run_grid(stub, "gpt", {}, [compare.Sweep({"scoin": (0.1,)})], str(tmp_path))
  assert stub_main.calls == []


def test_an_existing_csv_is_not_overwritten_by_accident(tmp_path, stub):
  sweeps = [compare.Sweep({"scion": (2**-6,)})]
  compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path))
  with pytest.raises(FileExistsError, match="--resume"):
    compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path))
  path = compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), overwrite=True)
  assert len(compare.runs_from_rows(compare.read_csv(path))) == 1
  (tmp_path / "results.csv").write_text("task,optimizer,lr,width,warmup,batch_size,steps,step\n"
                                         "gpt,scion,0.1,64,0,16,40,40\n")  # fmt: skip
  with pytest.raises(ValueError, match="older compare.py"):
    compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), resume=True)


def test_settings_budgets_and_warmup_fractions(tmp_path, stub):
  sweeps = [
    compare.Sweep(
      {"adamw": (2**-9,)}, warmups=(0, 0.25), settings={"b2": (0.95, 0.999)}, steps=(40, 160),
      seeds=(0, 1, 2),
    ),
    compare.Sweep({"scion": (2**-6,)}, warmups=(5,), steps=(None,), seeds=(0, 1, 2)),
  ]  # fmt: skip
  path = compare.run_grid(stub, "gpt", {"eval_every": 10}, sweeps, str(tmp_path))
  calls = stub_main.calls
  assert len(calls) == 3 * (2 * 2 * 2 + 1)
  # A warmup below 1 is a fraction of each run's own steps; a budget scales eval_every.
  adamw = {(c.steps, c.warmup, c.eval_every) for c in calls if c.optimizer == "adamw"}
  assert adamw == {(40, 0, 10), (40, 10, 10), (160, 0, 40), (160, 40, 40)}
  assert {(c.steps, c.warmup) for c in calls if c.optimizer == "scion"} == {(40, 5)}
  assert {c.b2 for c in calls if c.optimizer == "adamw"} == {0.95, 0.999}
  assert {c.b2 for c in calls if c.optimizer == "scion"} == {0.95}  # Not swept: the default.
  rows = compare.read_csv(path)
  assert {r["settings"] for r in rows} == {"b2=0.95", "b2=0.999", ""}
  points = compare.points_from_runs(compare.runs_from_rows(rows))
  assert len(points) == 2 * 2 * 2 + 1 and all(len(p["seeds"]) == 3 for p in points)
  # Resuming finds every run (settings and steps are part of a run's identity).
  compare.run_grid(stub, "gpt", {"eval_every": 10}, sweeps, str(tmp_path), resume=True)
  assert len(stub_main.calls) == len(calls)
  # Each optimizer's tuned point per budget: adamw's is b2 0.95 without warmup at both.
  curves = compare.budget_curves(points)[64]
  assert sorted(curves["adamw"]) == [40, 160] and sorted(curves["scion"]) == [40]
  for steps, point in curves["adamw"].items():
    assert (point["settings"], point["warmup"]) == ("b2=0.95", 0)
    assert point["final"] == pytest.approx(1.0 + 2.0 / steps)
  table = compare.points_table(points)
  assert "| adamw | 64 | 160 | 2^-9 | 40 (25%) | default | b2=0.999 | 3 |" in table
  files = compare.replot(path)
  assert any(f.endswith("budgets.png") for f in files)
  summary = (tmp_path / "summary.md").read_text()
  assert "| 64 | adamw | 160 | 2^-9 | 0 | b2=0.95 | 1.0125 ± 0.0100 | 1.00× |" in summary
  # Scion (5 warmup steps) is 0.00125 worse than adamw at 40: at most 40 adamw steps.
  assert "| 64 | scion | 40 | 2^-6 | 5 (12%) | – | 1.0513 ± 0.0100 | < 1.00× |" in summary


def test_speedup_reads_the_reference_curve_in_log_steps():
  # A reference whose tuned loss falls by 0.1 per doubling of its budget.
  curve = {200: 2.0, 800: 1.8, 1600: 1.7}
  assert compare.speedup(curve, 1.9, 200) == pytest.approx((2.0, "="))  # 400 steps, 2x.
  assert compare.speedup(curve, 1.75, 800) == pytest.approx((1600 / 2**0.5 / 800, "="))
  assert compare.speedup(curve, 1.8, 800) == (1.0, "=")  # Itself: exactly 1.
  assert compare.speedup(curve, 1.6, 200) == (8.0, ">")  # Beyond 1600: a lower bound.
  assert compare.speedup(curve, 2.1, 800) == (0.25, "<")  # Worse than 200: an upper bound.
  assert compare.speedup(curve, math.inf, 200)[1] == "?"  # Diverged: no ratio.
  # A curve that is not monotone: the first budget that reaches the loss.
  assert compare.steps_to_match({200: 2.0, 800: 1.8, 1600: 1.85}, 1.82) == pytest.approx(
    (200 * 4**0.9, "=")
  )
  bumpy = {200: 2.0, 800: 1.8, 1600: 1.85}
  assert compare.steps_to_match(bumpy, 1.81)[1] == "="
  assert compare.steps_to_match(bumpy, 1.79) == (1600.0, ">")


def _point(name, steps, final, width=128):
  return dict(
    optimizer=name, task="gpt", lr=2**-7, width=width, warmup=0, batch_size=32, radii="",
    settings="", steps=steps, seeds=[0, 1, 2], final=final, std=0.01, history=[],
  )  # fmt: skip


def test_budget_table_gives_speedups_over_each_reference():
  points = [
    _point("adamw", 200, 2.0), _point("adamw", 800, 1.8), _point("adamw", 1600, 1.7),
    _point("muon", 200, 1.9), _point("muon", 800, 1.75),
    _point("scion", 200, 1.8), _point("scion", 800, 1.65),
    _point("scion", 200, 2.5, width=64),  # Another width: compared with its own references.
  ]  # fmt: skip
  rows = {
    tuple(c.strip() for c in line.strip("|").split("|")[:3]): [
      c.strip() for c in line.strip("|").split("|")
    ]
    for line in compare.budget_table(points).splitlines()[2:]
  }
  assert rows[("128", "adamw", "200")][-2:] == ["1.00×", "< 1.00×"]
  assert rows[("128", "muon", "200")][-2:] == ["2.00×", "1.00×"]
  assert rows[("128", "scion", "200")][-2] == "4.00×"  # AdamW's 800.
  # Muon reaches 1.8 at 200 * 4**(0.1/0.15) steps.
  assert rows[("128", "scion", "200")][-1] == f"{4 ** (0.1 / 0.15):.2f}×"
  assert rows[("128", "scion", "800")][-2:] == ["> 2.00×", "> 1.00×"]
  assert rows[("64", "scion", "200")][-2:] == ["–", "–"]
  # One budget per optimizer: no budget table.
  assert compare.budget_table([_point("adamw", 200, 2.0), _point("scion", 200, 1.9)]) is None


def test_sweeps_from_the_command_line():
  assert compare.parse_sweeps(["b2=0.95,0.999", "lr=2**-7"], StubConfig) == {
    "b2": (0.95, 0.999),
    "lr": (2**-7,),
  }
  with pytest.raises(ValueError, match="FIELD=V1,V2"):
    compare.parse_sweeps(["b2"], StubConfig)
  with pytest.raises(ValueError, match="FIELD one of"):
    compare.parse_sweeps(["beta2=0.9"], StubConfig)


def test_only_runs_part_of_the_grid_first(tmp_path, stub):
  sweeps = [
    compare.Sweep({"scion": (2**-6, 2**-5), "adamw": (2**-9,)}, steps=(40, 160), seeds=(0, 1))
  ]
  only = {"steps": ["40"], "optimizer": ["scion"]}
  path = compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), only=only)
  assert {(c.optimizer, c.steps) for c in stub_main.calls} == {("scion", 40)}
  assert len(stub_main.calls) == 2 * 2
  # Learning rates as the command line writes them; the rest of the grid runs without it.
  compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), resume=True, only={"lr": ["2**-9"]})
  assert [(c.optimizer, c.steps) for c in stub_main.calls[4:]] == [
    ("adamw", 40),
    ("adamw", 40),
    ("adamw", 160),
    ("adamw", 160),
  ]
  compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), resume=True)
  assert (
    len(stub_main.calls) == 2 * 3 * 2 and len(compare.runs_from_rows(compare.read_csv(path))) == 12
  )
  with pytest.raises(ValueError, match="--only"):
    compare.run_grid(stub, "gpt", {}, sweeps, str(tmp_path), only={"budget": [40]})


def test_only_from_the_command_line(tmp_path, monkeypatch, stub):
  monkeypatch.setattr(compare, "load_task", lambda task: stub)
  out = str(tmp_path)
  args = ["--task", "gpt", "--optimizers", "scion", "--lrs", "2**-6", "--budgets", "40,80"]
  compare.main([*args, "--out-dir", out, "--only", "steps=80"])
  assert [c.steps for c in stub_main.calls] == [80]
  with pytest.raises(ValueError, match="FIELD=V1"):
    compare.main([*args, "--out-dir", out, "--resume", "--only", "steps"])


def test_every_preset_builds_its_grid_and_the_docs_count_its_runs():
  """Each preset of examples/grids.py builds on its task's Config with the task's optimizers,
  and the run counts docs/experiments.md gives next to the commands are the grids' sizes."""
  import pathlib
  import re

  grids = load_example("grids")
  sizes = {}
  for name, preset in grids.PRESETS.items():
    task = compare.load_task(preset["task"])
    runs = compare.grid(task, preset["base"], preset["sweeps"])
    assert runs, name
    assert {r["optimizer"] for r in runs} <= set(task.OPTIMIZERS), name
    fields = {f.name for f in dataclasses.fields(task.Config)}
    assert set(preset["base"]) <= fields, name
    assert {k for s in preset["sweeps"] for k in s.settings} <= fields, name
    sizes[name] = len(runs)
  page = pathlib.Path(compare.__file__).parents[1] / "docs" / "experiments.md"
  stated = re.findall(r"--preset (\w+) --out-dir \S+ +# (\d+) runs", page.read_text())
  assert len(stated) >= 9
  assert {name: int(n) for name, n in stated} == {name: sizes[name] for name, _ in stated}
