"""Markdown tables from one or more ``bench.py --json`` files.

``python benchmarks/report.py results.json [more.json ...]`` prints, per file,
the machine and every section it holds, as the tables of ``benchmarks/README.md``.
"""

from __future__ import annotations

import json
import sys

COLUMNS = {
  "update": ["tree", "width", "depth", "optimizer", "ms", "/optax.muon", "/adamw"],
  "ns": ["case", "ms", "GFLOP/s", None, "of matmul"],  # None: the matmul column, named by size.
  "state": ["optimizer", "state MB", "state / params"],
  "train": [
    "optimizer",
    "ms/step",
    "/adamw",
    "compile s",
    "peak MB",
    "peak /adamw",
    "params MB",
    "state MB",
    "compilations",
  ],
}


def fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.3g}"
  return str(v)


def markdown(rows: list[dict], cols: list[str]) -> str:
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
  return "\n".join(lines)


def report(out: dict) -> str:
  m = out["machine"]
  parts = [
    f"Machine: {m['device']} ({m['platform']}), CPU {m['cpu']} ×{m['cpu_count']},"
    f" versions {m['versions']}, load average at start {m.get('load_average')}."
  ]
  for section, cols in COLUMNS.items():
    if section not in out:
      continue
    if section == "ns":
      mm = [k for k in out["ns"][0] if k.startswith("matmul")]
      cols = [c for c in cols if c is not None] if not mm else [c or mm[0] for c in cols]
    title = section + (f" ({out['train_info']})" if section == "train" else "")
    parts.append(f"**{title}**\n\n" + markdown(out[section], cols))
  return "\n\n".join(parts)


if __name__ == "__main__":
  for path in sys.argv[1:]:
    with open(path) as f:
      print(f"### {path}\n\n{report(json.load(f))}\n")
