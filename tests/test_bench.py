"""benchmarks/bench.py runs end to end on tiny sizes (no assertion on timings)."""

import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules["bench"] = mod  # dataclasses look their module up there.
  spec.loader.exec_module(mod)
  return mod


TINY = ["--quick", "--widths", "16", "--vocab", "24", "--repeats", "1", "--matmul-size", "64"]


@pytest.mark.slow  # An end-to-end run (the benchmark script / the example's training).
def test_update_ns_state_sections(bench, tmp_path):
  path = tmp_path / "out.json"
  opts = "scion,muon (gram),optax.adamw"
  argv = [*TINY, "--sections", "update,ns,state", "--optimizers", opts, "--json", str(path)]
  out = bench.main(argv)
  assert json.loads(path.read_text())["machine"]["versions"]["jax"]
  update = out["update"]
  assert {(r["tree"], r["optimizer"]) for r in update} == {
    (tree, name) for tree in ("list", "scanned") for name in opts.split(",")
  }
  for r in update:
    assert r["ms"] > 0 and math.isfinite(r["/adamw"])
  # Plain and Gram rows for each rectangular shape, plain only for square ones.
  assert len(out["ns"]) == 6
  assert all(r["GFLOP/s"] > 0 for r in out["ns"])
  state = {r["optimizer"]: r["state / params"] for r in out["state"]}
  # One momentum (plus scalar counters), half of it in bf16; AdamW two moments.
  assert 1.0 <= state["scion (f32 momentum)"] < 1.01
  assert 0.5 <= state["scion (bf16 momentum)"] < 0.51
  assert 2.0 <= state["optax.adamw"] < 2.01
  # LR-free Scion: momentum, the estimate's gradient sum and the initial point x₀.
  assert 3.0 <= state["scion_free"] < 3.02


@pytest.mark.slow
@pytest.mark.parametrize("ns_method", ["newton_schulz", "gram_newton_schulz"])
def test_train_section(bench, ns_method, tmp_path):
  argv = [*TINY, "--sections", "train", "--ns-method", ns_method]
  argv += ["--json", str(tmp_path / "t.json")]
  argv += ["--train-width", "32", "--train-depth", "1", "--block-size", "8", "--batch-size", "2"]
  out = bench.main(argv)
  rows = {r["optimizer"]: r for r in out["train"]}
  assert set(rows) == {"scion", "adamw"}
  for r in rows.values():
    assert r["compilations"] == 1  # No recompilation after the first step.
    assert r["ms/step"] > 0 and r["peak MB"] > 0
  assert rows["scion"]["state MB"] < rows["adamw"]["state MB"]


@pytest.fixture(scope="module")
def gpu_check():
  spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_gpu_check_fails_soft(gpu_check, tmp_path, monkeypatch):
  def broken(args):
    raise RuntimeError("no such piece here")

  monkeypatch.setattr(gpu_check, "check_numerics", broken)
  skip = "tests,update,ns,train"
  out = gpu_check.main(["--quick", "--out-dir", str(tmp_path), "--skip", skip])
  assert out["pieces"]["numerics"]["status"] == "error"
  assert "no such piece here" in out["pieces"]["numerics"]["error"]
  assert {out["pieces"][k]["status"] for k in skip.split(",")} == {"skipped"}
  saved = json.loads((tmp_path / "gpu_check.json").read_text())
  assert saved["pieces"]["numerics"]["status"] == "error"
  assert "numerics: error" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.slow
def test_gpu_check_quick_end_to_end(gpu_check, tmp_path):
  # Every piece but the test subset (a pytest run inside this one) on tiny sizes.
  out = gpu_check.main(["--quick", "--out-dir", str(tmp_path), "--skip", "tests"])
  for name in ("numerics", "update", "ns", "train"):
    assert out["pieces"][name]["status"] == "ok", out["pieces"][name]
  assert {r["optimizer"] for r in out["pieces"]["train"]["result"]} == {"scion", "muon", "adamw"}
  update = out["pieces"]["update"]["result"]
  assert {r["width"] for r in update} == {32}
  assert all(r["ms"] > 0 for r in update)
  text = (tmp_path / "gpu_check.md").read_text()
  assert "## train" in text and "## Numerics on the device" in text


@pytest.mark.slow
def test_equal_quality_quick(tmp_path):
  spec = importlib.util.spec_from_file_location("eq", ROOT / "benchmarks" / "equal_quality.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  argv = ["--quick", "--no-time", "--json", str(tmp_path / "q.json")]
  out = mod.main([*argv, "--markdown", str(tmp_path / "q.md")])
  rows = {(r["method"], r["steps"]): r for r in out["rows"]}
  target = out["target"]["max |σ−1|"]
  assert 0 < target < 1
  # The same quintic in normax and optax: the same quality up to float rounding.
  assert rows[("normax quintic", 5)]["reaches target"]
  assert abs(rows[("normax quintic", 5)]["max |σ−1|"] - target) < 1e-3
  # One Polar Express step cannot orthogonalize a real gradient.
  assert not rows[("normax polar_express", 1)]["reaches target"]
  assert "| method | fewest steps at target" in (tmp_path / "q.md").read_text()


def test_quick_runs_write_outside_the_checkout(bench, gpu_check, tmp_path, monkeypatch, capsys):
  # A smoke test's files go to a new temporary folder (here under tmp_path), never into the
  # repository, unless a path is given; full runs keep writing into benchmarks/.
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  gpu_check.main(["--quick", "--skip", "tests,numerics,update,ns,train"])
  (written,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
  out_dir = Path(written.split()[1]).parent
  assert out_dir.parent == tmp_path and (out_dir / "gpu_check.md").is_file()
  assert gpu_check.parse([]).out_dir is None  # main() then picks benchmarks/results/gpu_check-*.

  assert Path(bench.parse(["--quick"]).json).parent.parent == tmp_path
  assert bench.parse([]).json == "benchmarks/results.json"

  spec = importlib.util.spec_from_file_location("eq", ROOT / "benchmarks" / "equal_quality.py")
  eq = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(eq)
  quick = eq.parse(["--quick"])
  assert Path(quick.json).parent.parent == tmp_path == Path(quick.markdown).parent.parent
  full = eq.parse([])
  assert Path(full.json) == ROOT / "benchmarks" / "results" / "equal_quality.json"


@pytest.mark.slow  # An end-to-end run of the script on tiny sizes.
def test_bounded_quick(tmp_path):
  spec = importlib.util.spec_from_file_location("bounded", ROOT / "benchmarks" / "bounded.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  out = mod.main(["--quick", "--json", str(tmp_path / "b.json")])
  assert json.loads((tmp_path / "b.json").read_text())["dualize"]
  for row in out["dualize"]:  # The bound holds; without it the quintic overshoots.
    assert row["band_bounded"][1] <= 1 + 1e-5 < 1.1 < row["band_unbounded"][1]
  assert all(r["bounded_ms"] > 0 for r in out["update"])
