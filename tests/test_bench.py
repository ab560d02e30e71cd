"""benchmarks/bench.py runs end to end on tiny sizes (no assertion on timings)."""

import importlib.util
import json
import math
import sys
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
