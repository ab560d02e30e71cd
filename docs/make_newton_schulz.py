"""Regenerates docs/newton_schulz.md: how close to orthogonal each Newton–Schulz schedule gets.

Usage:
  python docs/make_newton_schulz.py            # rewrite docs/newton_schulz.md
  python docs/make_newton_schulz.py --check    # recompute and compare with the committed doc
  python docs/make_newton_schulz.py --size 16 --out /tmp/ns.md   # a quick small run

Every number in the doc comes from running this script (float32 or bfloat16 iterates on CPU or
whatever JAX's default device is; the singular values are measured in float64 numpy).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import jax.numpy as jnp
import numpy as np

import normax

DOC = pathlib.Path(__file__).with_name("newton_schulz.md")
SCHEDULES = ("quintic", "polar_express", "cubic")
STEPS = (3, 5, 8, 12)
MATRICES = ("gaussian", "cond 1e2", "cond 1e4", "cond 1e6")
DTYPES = ("float32", "bfloat16")
PRECONDITIONINGS = normax.PRECONDITIONINGS
PRE_SCHEDULES = ("quintic", "polar_express", "dion")
PRE_STEPS = (0, 3, 4, 5)


def make_matrix(kind: str, n: int, seed: int = 0) -> np.ndarray:
  """A square ``n × n`` test matrix: i.i.d. gaussian, or a log-spaced spectrum of given cond."""
  rng = np.random.default_rng(seed)
  if kind == "gaussian":
    return rng.standard_normal((n, n))
  cond = float(kind.split()[1])
  u, _ = np.linalg.qr(rng.standard_normal((n, n)))
  v, _ = np.linalg.qr(rng.standard_normal((n, n)))
  return (u * np.geomspace(1.0, 1.0 / cond, n)) @ v.T


def measure(n: int) -> dict[tuple[str, int, str, str], tuple[float, float]]:
  """(schedule, steps, matrix, dtype) -> (min σ, max σ) of newton_schulz's output."""
  out = {}
  for kind in MATRICES:
    g = jnp.asarray(make_matrix(kind, n), jnp.float32)
    for sched in SCHEDULES:
      for steps in STEPS:
        for dt in DTYPES:
          cdt = None if dt == "float32" else jnp.bfloat16
          x = normax.newton_schulz(g, steps=steps, coefficients=sched, compute_dtype=cdt)
          s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
          out[sched, steps, kind, dt] = (float(s.min()), float(s.max()))
  return out


def measure_preconditioning(n: int) -> dict[tuple[str, str, int, str], tuple[float, float]]:
  """(schedule, preconditioning, steps, matrix) -> (min σ, max σ), float32; 0 steps: the start."""
  out = {}
  for kind in MATRICES:
    g = jnp.asarray(make_matrix(kind, n), jnp.float32)
    for sched in PRE_SCHEDULES:
      for pre in PRECONDITIONINGS:
        for steps in PRE_STEPS:
          if steps == 0:
            x = normax.precondition(g, pre)
          elif sched == "dion" and steps != len(normax.DION):
            continue  # a five-step schedule
          else:
            x = normax.newton_schulz(g, steps=steps, coefficients=sched, preconditioning=pre)
          s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
          out[sched, pre, steps, kind] = (float(s.min()), float(s.max()))
  return out


def render_preconditioning(n: int) -> list[str]:
  m = measure_preconditioning(n)
  lines = [
    "## Preconditioning",
    "",
    "`preconditioning=` (of `normax.newton_schulz`, `normax.Spectral` and `normax.muon`, the",
    "options of `optax.contrib.muon`) sets how `G` is scaled before the first step. Every",
    "option guarantees `σ_max ≤ 1` at the start, which the iteration needs (the quintic",
    "blows up above about 1.2); they differ in how large the small singular values start:",
    "",
    "- `frobenius` (default): `G / ‖G‖_F`. Cheap; the start is `σ/‖G‖_F`, which for an",
    "  `n × n` matrix with a flat spectrum is about `1/√n`: the first steps only grow it.",
    "- `spectral`: `G / σ_max(G)`, the best rescaling (the largest singular value starts at",
    "  exactly 1) but it costs an SVD.",
    "- `schatten`: `G / ‖G‖_S4` with `‖G‖_S4 = ‖G Gᵀ‖_F^{1/2} = (Σσ⁴)^{1/4}`, between",
    "  `σ_max` and `‖G‖_F`, at the cost of one Gram matrix (Grishina et al., 2025).",
    "- `aol`: `D G` with `D_ii = (Σ_j |G Gᵀ|_ij)^{-1/2}` on the short side (Turbo-Muon,",
    "  Boissin et al., 2025). By Gershgorin `‖D G Gᵀ D‖₂ ≤ 1`, so `σ_max ≤ 1` is guaranteed;",
    "  for most matrices the start is much closer to 1 than with `frobenius`, so one step",
    "  fewer reaches the same range (compare `aol` at 4 steps with `frobenius` at 5 below).",
    "  `D` is not a multiple of the identity, so the result is the polar factor of `D G`,",
    "  close to but not exactly that of `G`; the other three only rescale `G`.",
    "",
    "The `0 steps` column is the range of the scaled matrix (the guaranteed start); the",
    "others are `min σ – max σ` after that many float32 steps. `dion` is",
    "`normax.DION`, the five-step schedule of Dion (Ahn et al., 2025; `optax.contrib.muon`'s",
    '`"dion"`); `"standard"` is `optax.contrib.muon`\'s name for `quintic`.',
    "",
  ]
  for kind in MATRICES:
    lines += [f"### {kind}", ""]
    header = " | ".join(f"{s} steps" for s in PRE_STEPS)
    lines += [f"| schedule | preconditioning | {header} |"]
    lines += ["|---|---|" + "---|" * len(PRE_STEPS)]
    for sched in PRE_SCHEDULES:
      for pre in PRECONDITIONINGS:
        cells = [m.get((sched, pre, s, kind)) for s in PRE_STEPS]
        text = ["–" if c is None else f"{c[0]:.4f} – {c[1]:.4f}" for c in cells]
        lines.append(f"| {sched} | {pre} | " + " | ".join(text) + " |")
    lines.append("")
  return lines


def lowest_normalized_sigma(kind: str, n: int) -> float:
  s = np.linalg.svd(make_matrix(kind, n), compute_uv=False)
  return float(s[-1] / np.linalg.norm(s))


def render(n: int) -> str:
  m = measure(n)
  lines = [
    "# How close to orthogonal Newton–Schulz gets",
    "",
    "<!-- Generated by `python docs/make_newton_schulz.py`; do not edit by hand. -->",
    "",
    "`normax.newton_schulz(G)` divides `G` by its Frobenius norm, so every singular value",
    "lies in `(0, 1]`, then applies an odd polynomial `p_t(x) = a x + b x³ + c x⁵` to the",
    "singular values at each step `t` (the singular vectors are untouched). After `T` steps",
    "the result is `U p(Σ/‖G‖_F) Vᵀ` with `p = p_T ∘ … ∘ p_1`; the exact polar factor",
    "`U Vᵀ` (`normax.orthogonalize_svd`) has every singular value equal to 1. The spectral",
    "norm's LMO identities hold up to this range: `norm(dualize(G))` and",
    "`⟨G, dualize(G)⟩ / dual_norm(G)` lie in `[min σ, max σ]`.",
    "",
    "## The schedules",
    "",
    '- `"quintic"` (default, `normax.QUINTIC = (3.4445, -4.7750, 2.0315)` at every step):',
    "  the classic Muon iteration of Jordan et al. (2024). It has a steep slope at 0 (3.4445),",
    "  so small singular values grow fast, but it does not converge to 1: it settles into",
    "  an oscillation of roughly `[0.68, 1.13]`. For training this is enough (Muon's",
    "  updates need the direction, not exact orthogonality).",
    '- `"polar_express"`: a different quintic at each step, each the minimax-optimal',
    "  approximation of 1 on the interval where the singular values are known to lie",
    "  (Amsel et al., 2025), computed by `normax.polar_express_coefficients(steps)` for",
    "  normalized singular values down to `lower = 1e-3`. The schedule depends on the",
    "  number of steps; with 8 steps it reaches 1 to about 1e-5 for every singular value",
    "  above `1e-3 · ‖G‖_F`.",
    '- `"cubic"` (`normax.CUBIC = (1.5, -0.5, 0)`): the textbook Newton–Schulz iteration.',
    "  Monotone and convergent to exactly 1, but slow from small singular values (each step",
    "  multiplies them by at most 1.5).",
    "- Your own: one `(a, b, c)` triple used at every step, or a sequence of triples (one",
    "  per step; a shorter sequence repeats its last triple):",
    "",
    "  ```python",
    "  normax.newton_schulz(g, steps=5, coefficients=(3.4445, -4.7750, 2.0315))",
    "  per_step = ((4.0, -4.0, 1.0), (3.0, -2.5, 0.5), (1.875, -1.25, 0.375))",
    "  normax.Spectral(steps=3, coefficients=per_step)",
    "  normax.schedule_bound(((4.0, -4.0, 1.0),), steps=5, lower=1e-3)  # its range on [1e-3, 1]",
    "  ```",
    "",
    "`normax.schedule_bound(coefficients, steps, lower)` returns the range `(min p, max p)` of",
    "the composed map over `[lower, 1]` in float64: the guarantee for any matrix whose",
    "smallest singular value is at least `lower · ‖G‖_F`. `compute_dtype=jnp.bfloat16` runs",
    "the iterate in bfloat16 with float32 accumulation (for accelerators); rounding then",
    "widens the range a little, as the bfloat16 rows below show.",
    "",
    "## Measured singular values",
    "",
    f"Square `{n} × {n}` float32 matrices: i.i.d. gaussian, and matrices with singular values",
    "log-spaced from 1 down to 1/cond. Each cell is `min σ – max σ` of the output.",
    "The `bound` row is `schedule_bound(schedule, steps, lower=σ_min/‖G‖_F)`.",
    "",
  ]
  for kind in MATRICES:
    lower = lowest_normalized_sigma(kind, n)
    lines += [f"### {kind} (σ_min/‖G‖_F = {lower:.2e})", ""]
    lines += ["| schedule | dtype | " + " | ".join(f"{s} steps" for s in STEPS) + " |"]
    lines += ["|---|---|" + "---|" * len(STEPS)]
    for sched in SCHEDULES:
      bounds = [normax.schedule_bound(sched, s, lower=lower) for s in STEPS]
      lines.append(f"| {sched} | bound | " + " | ".join(f"{a:.4f} – {b:.4f}" for a, b in bounds))
      for dt in DTYPES:
        cells = [m[sched, s, kind, dt] for s in STEPS]
        lines.append(f"| {sched} | {dt} | " + " | ".join(f"{a:.4f} – {b:.4f}" for a, b in cells))
      lines[-3:] = [line + " |" for line in lines[-3:]]
    lines.append("")
  lines += render_preconditioning(n)
  lines += [f"Size used: {n}.", ""]
  return "\n".join(lines)


_CELL = re.compile(r"(-?\d+\.\d{4}) – (-?\d+\.\d{4})")


def numbers(text: str) -> np.ndarray:
  return np.array([float(v) for pair in _CELL.findall(text) for v in pair])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=128, help="matrix side (default 128)")
  parser.add_argument("--out", type=pathlib.Path, default=DOC)
  parser.add_argument("--check", action="store_true", help="compare with the committed doc")
  parser.add_argument("--tol", type=float, default=0.02, help="--check: max |difference|")
  args = parser.parse_args(argv)
  text = render(args.size)
  if args.check:
    old = args.out.read_text()
    size = re.search(r"Size used: (\d+)\.", old)
    if size is None or int(size.group(1)) != args.size:
      print(f"{args.out} was made with another --size; pass --size {size and size.group(1)}.")
      return 1
    a, b = numbers(old), numbers(text)
    if a.shape != b.shape or np.max(np.abs(a - b)) > args.tol:
      diff = np.max(np.abs(a - b)) if a.shape == b.shape else "shapes differ"
      print(f"{args.out} is out of date (max difference {diff}); rerun the script.")
      return 1
    print(f"{args.out} agrees within {args.tol} (max difference {np.max(np.abs(a - b)):.2e}).")
    return 0
  args.out.write_text(text)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
