"""One command for a machine with one NVIDIA GPU: correctness on the GPU, then speed.

  pip install -U "jax[cuda12]"
  PYTHONPATH=$PWD python benchmarks/gpu_check.py          # ≤ 8 minutes on one GPU
  PYTHONPATH=$PWD python benchmarks/gpu_check.py --quick  # tiny sizes: a smoke test on CPU

Pieces, each run and recorded even when another fails (an error is written
into the results, never raised):

1. ``tests``: the correctness subset of the test suite in a subprocess on the
   default device (norms, Newton–Schulz in float32 and bfloat16, the Gram
   form, the optimizers, and the sharding strategies on one device).
2. ``numerics``: Newton–Schulz on the device against a float64 reference
   ``U p(Σ) Vᵀ`` (the iteration's own scalar polynomial applied along the
   SVD's singular vectors, computed with numpy): in float32 the matrices
   agree, in bfloat16 every singular value lands in the reference's band;
   and one ``normax.muon`` step against ``optax.contrib.muon``'s.
3. ``update``: the jitted optimizer update on GPT-like trees at widths
   768–2048 with bfloat16 Newton–Schulz (normax) against
   ``optax.contrib.muon`` (its default float32) and ``optax.adamw``
   (``benchmarks/bench.py --sections update``).
4. ``ns``: Newton–Schulz's FLOP rate in bfloat16 against a large bfloat16
   matmul's, timed alternately in the same run (``bench.py --sections ns``).
5. ``train``: the char-GPT training step (``examples/char_gpt.py``) at
   GPT-small size — width 768, 12 layers, 12 heads, 1024 tokens — with
   ``scion`` (bfloat16 Newton–Schulz), ``muon`` and ``adamw``: step time,
   compile time and the compiled step's peak memory (``bench.py --sections
   train``).

Writes ``gpu_check.json`` (everything) and ``gpu_check.md`` (tables) under
``--out-dir`` (by default a new ``benchmarks/results/gpu_check-<time>``, or a
temporary folder with ``--quick``) and prints where.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The test subset: module paths and a -k expression (None: the whole module).
TESTS = [
  ("tests/test_norms.py", None),
  ("tests/test_newton_schulz.py", None),
  ("tests/test_gram_newton_schulz.py", None),
  ("tests/test_optimizers.py", None),
  ("tests/test_sharding.py", "without_a_mesh or unknown_strategy or auto_strategy_choice"),
]
QUICK_TESTS = [
  ("tests/test_newton_schulz.py", "bfloat16"),
  ("tests/test_sharding.py", "without_a_mesh"),
]


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke test)")
  p.add_argument(
    "--out-dir",
    default=None,
    help="default: benchmarks/results/gpu_check-<time>; with --quick, a new temporary folder",
  )
  p.add_argument(
    "--skip", default="", help="comma-separated pieces to skip: tests,numerics,update,ns,train"
  )
  p.add_argument("--tests-timeout", type=int, default=None, help="seconds for the test subset")
  return p.parse_args(argv)


def run_tests(args, out_dir: Path) -> dict:
  """The test subset in a subprocess; pass/fail counts from pytest's JUnit XML."""
  import xml.etree.ElementTree as ET

  selection = QUICK_TESTS if args.quick else TESTS
  timeout = args.tests_timeout or (240 if args.quick else 150)
  env = dict(os.environ)
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # Share the GPU with this process.
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  results = {"selection": [f"{m}" + (f" -k '{k}'" if k else "") for m, k in selection]}
  totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
  failures = []
  start = time.monotonic()
  for i, (module, expr) in enumerate(selection):
    left = timeout - (time.monotonic() - start)
    if left < 5:
      failures.append(f"{module}: not run (the {timeout} s budget was spent)")
      continue
    xml = out_dir / f"tests_{i}.xml"
    cmd = [sys.executable, "-m", "pytest", module, "-q", "-p", "no:xdist", f"--junitxml={xml}"]
    cmd += ["-k", expr] if expr else []
    try:
      proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=left)
    except subprocess.TimeoutExpired:
      failures.append(f"{module}: timed out (budget {timeout} s)")
      continue
    if not xml.exists():
      failures.append(f"{module}: pytest wrote no report: {proc.stdout[-800:]}{proc.stderr[-800:]}")
      continue
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    totals["failed"] += n["failures"]
    totals["errors"] += n["errors"]
    totals["skipped"] += n["skipped"]
    totals["passed"] += n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    for case in suite.iter("testcase"):
      if case.find("failure") is not None or case.find("error") is not None:
        failures.append(f"{case.get('classname')}::{case.get('name')}")
  results |= totals
  results["failures"] = failures
  results["seconds"] = time.monotonic() - start
  results["ok"] = not failures and totals["passed"] > 0
  return results


def check_numerics(args) -> dict:
  """Newton–Schulz on the device against a float64 reference, and muon against optax."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import normax

  m, n = (32, 96) if args.quick else (512, 2048)
  rng = np.random.default_rng(0)
  # Singular values spread over three decades, as in real gradients.
  u, _ = np.linalg.qr(rng.normal(size=(m, m)))
  v, _ = np.linalg.qr(rng.normal(size=(n, m)))
  s = np.geomspace(1.0, 1e-3, m)
  g = (u * s) @ v.T
  fro = np.linalg.norm(g)
  rows = []
  for schedule, steps in (("quintic", 5), ("polar_express", 8)):
    x = s / fro
    triples = [normax.QUINTIC] * steps if schedule == "quintic" else None
    triples = triples or normax.polar_express_coefficients(steps)
    for a, b, c in triples:
      x = a * x + b * x**3 + c * x**5
    want = (u * x) @ v.T  # U p(Σ/‖G‖_F) Vᵀ in float64.
    for dtype in ("float32", "bfloat16"):
      f = jax.jit(
        lambda y, schedule=schedule, steps=steps, dtype=dtype: normax.newton_schulz(
          y, steps=steps, coefficients=schedule, compute_dtype=dtype
        )
      )
      got = np.asarray(f(jnp.asarray(g, jnp.float32)), np.float64)
      if dtype == "float32":  # The same polynomial: the matrices agree to rounding.
        check, err, tol = "‖X − ref‖₂", float(np.linalg.norm(got - want, 2)), 2e-3
      else:
        # bfloat16 rounding (2^-8 per step) mixes the directions of close small
        # singular values, which the polynomial maps to the same band anyway:
        # check that every singular value lands in the reference's band.
        sv = np.linalg.svd(got, compute_uv=False)
        err = float(max(x.min() - sv.min(), sv.max() - x.max(), 0.0))
        check, tol = "σ(X) outside the reference band by", 0.05
      rows.append(
        {
          "check": f"newton_schulz {schedule} x{steps} {dtype} ({m}×{n}): {check}",
          "error": err,
          "tolerance": tol,
          "ok": bool(err < tol),
        }
      )
  # One step of normax.muon against optax.contrib.muon on a matrix and a vector.
  params = {"w": jnp.asarray(rng.normal(size=(m, n)), jnp.float32), "b": jnp.zeros(n)}
  grads = {"w": jnp.asarray(g, jnp.float32), "b": jnp.ones(n)}
  ours, ref = normax.muon(0.02), optax.contrib.muon(0.02)
  u1 = jax.jit(lambda gr, p: ours.update(gr, ours.init(p), p)[0])(grads, params)
  u2 = jax.jit(lambda gr, p: ref.update(gr, ref.init(p), p)[0])(grads, params)
  err = max(float(jnp.max(jnp.abs(u1[k] - u2[k]))) for k in params)
  scale = max(float(jnp.max(jnp.abs(u2[k]))) for k in params)
  rows.append(
    {
      "check": "normax.muon step vs optax.contrib.muon (float32)",
      "error": err / scale,  # Largest entry difference, relative.
      "tolerance": 1e-3,
      "ok": bool(err / scale < 1e-3),
    }
  )
  return {"device": str(jax.devices()[0]), "rows": rows, "ok": all(r["ok"] for r in rows)}


def _bench():
  spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules["bench"] = mod  # dataclasses look their module up there.
  spec.loader.exec_module(mod)
  return mod


def bench_argv(piece: str, args, out_dir: Path) -> list[str]:
  """``bench.py`` flags of one piece."""
  argv = ["--sections", piece, "--json", str(out_dir / f"bench_{piece}.json")]
  if piece == "update":
    opts = "scion,muon,optax.contrib.muon,optax.adamw"
    argv += ["--optimizers", opts, "--ns-dtype", "bfloat16", "--depths", "1"]
    argv += ["--widths", "32"] if args.quick else ["--widths", "768", "1024", "2048"]
    argv += ["--repeats", "2", "--warmup", "1"] if args.quick else ["--repeats", "10"]
  elif piece == "ns":
    argv += ["--ns-dtype", "bfloat16"]
    if args.quick:
      argv += ["--widths", "32", "--matmul-size", "128", "--repeats", "2", "--warmup", "1"]
    else:
      argv += ["--widths", "1024", "2048", "4096", "--matmul-size", "8192", "--repeats", "10"]
  elif piece == "train":
    argv += ["--train-optimizers", "scion,muon,adamw", "--ns-dtype", "bfloat16"]
    if args.quick:
      argv += ["--train-width", "32", "--train-depth", "1", "--block-size", "16"]
      argv += ["--batch-size", "2", "--repeats", "2", "--warmup", "1"]
    else:
      argv += ["--train-width", "768", "--train-depth", "12", "--block-size", "1024"]
      argv += ["--batch-size", "8", "--repeats", "10"]
  return argv


def markdown(result: dict) -> str:
  lines = [f"# normax GPU check ({result['started']})", ""]
  lines.append(f"Device: {result.get('device', '?')}; command: `{result['command']}`")
  lines.append(f"Total {result.get('seconds', 0):.0f} s.")
  lines.append("")
  lines.append("| piece | status | seconds |")
  lines.append("|---|---|---|")
  for name, piece in result["pieces"].items():
    lines.append(f"| {name} | {piece['status']} | {piece.get('seconds', 0):.0f} |")
  t = result["pieces"].get("tests", {}).get("result")
  if t:
    lines += ["", "## Tests", ""]
    lines.append(f"{t['passed']} passed, {t['failed']} failed, {t['errors']} errors,")
    lines.append(f"{t['skipped']} skipped: {'; '.join(t['selection'])}.")
    lines += [f"- FAILED {f}" for f in t["failures"]]
  num = result["pieces"].get("numerics", {}).get("result")
  if num:
    lines += ["", "## Numerics on the device", "", "| check | error | tolerance | ok |"]
    lines.append("|---|---|---|---|")
    for r in num["rows"]:
      lines.append(f"| {r['check']} | {r['error']:.2e} | {r['tolerance']:g} | {r['ok']} |")
  bench = result.get("bench_module")
  for name, cols in (
    ("update", ["tree", "width", "depth", "optimizer", "ms", "/optax.muon", "/adamw"]),
    ("ns", ["case", "ms", "GFLOP/s", None, "of matmul"]),
    ("train", ["optimizer", "ms/step", "/adamw", "compile s", "peak MB", "peak /adamw"]),
  ):
    rows = result["pieces"].get(name, {}).get("result")
    if not rows or bench is None:
      continue
    if name == "ns":
      cols = [c or next(k for k in rows[0] if k.startswith("matmul")) for c in cols]
    lines += ["", f"## {name}", "", bench.table(rows, cols)]
  for name, piece in result["pieces"].items():
    if piece["status"] == "error":
      lines += ["", f"## {name}: error", "", "```", piece["error"][-2000:], "```"]
  return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
  args = parse(argv)
  started = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
  if args.out_dir:
    out_dir = Path(args.out_dir)
  elif args.quick:  # A smoke test's results are not results: keep them out of the checkout.
    out_dir = Path(tempfile.mkdtemp(prefix=f"normax-gpu_check-{started}-"))
  else:
    out_dir = ROOT / "benchmarks" / "results" / f"gpu_check-{started}"
  out_dir.mkdir(parents=True, exist_ok=True)
  skip = set(filter(None, args.skip.split(",")))
  result = {"started": started, "command": " ".join(["python", *sys.argv]), "pieces": {}}
  t_all = time.monotonic()

  def save():
    data = {k: v for k, v in result.items() if k != "bench_module"}
    (out_dir / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str))
    (out_dir / "gpu_check.md").write_text(markdown(result))

  def piece(name, fn):
    if name in skip:
      result["pieces"][name] = {"status": "skipped"}
      return
    t0 = time.monotonic()
    print(f"== {name}", flush=True)
    try:
      value = fn()
      ok = value.get("ok", True) if isinstance(value, dict) else bool(value)
      result["pieces"][name] = {"status": "ok" if ok else "failed", "result": value}
    except Exception:  # Fail soft: record it, go on with the next piece.
      result["pieces"][name] = {"status": "error", "error": traceback.format_exc()}
      print(traceback.format_exc(), flush=True)
    result["pieces"][name]["seconds"] = time.monotonic() - t0
    result["seconds"] = time.monotonic() - t_all
    save()

  # The tests first: their subprocess then gets the GPU before this process holds memory.
  piece("tests", lambda: run_tests(args, out_dir))
  try:
    import jax

    result["device"] = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    result["bench_module"] = _bench()
  except Exception:
    result["pieces"]["setup"] = {"status": "error", "error": traceback.format_exc()}
  piece("numerics", lambda: check_numerics(args))
  for name in ("update", "ns", "train"):

    def run_bench(name=name):
      bench = result.get("bench_module")
      if bench is None:
        raise RuntimeError("benchmarks/bench.py could not be loaded (see setup)")
      out = bench.main(bench_argv(name, args, out_dir))
      return out[name]

    piece(name, run_bench)
  result["seconds"] = time.monotonic() - t_all
  save()
  print(markdown(result))
  print(f"wrote {out_dir / 'gpu_check.json'} and {out_dir / 'gpu_check.md'}")
  return result


if __name__ == "__main__":
  main()
