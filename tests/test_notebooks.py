"""The notebooks: each committed ``.ipynb`` matches its py:percent source, and each runs.

The ``.py`` file is the source; regenerate a notebook with
``jupytext --to ipynb --update notebooks/NAME.py``.
"""

import os
import pathlib
import subprocess
import sys

import jupytext
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))


def _cells(notebook):
  return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_notebook_has_its_source():
  orphans = sorted(
    p.name for p in (ROOT / "notebooks").glob("*.ipynb") if not p.with_suffix(".py").exists()
  )
  assert not orphans, f"Notebooks without a py:percent source in notebooks/: {orphans}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_source(source):
  ipynb = source.with_suffix(".ipynb")
  fix = f"Regenerate it: jupytext --to ipynb --update {source.relative_to(ROOT)}"
  assert ipynb.exists(), f"{ipynb.relative_to(ROOT)} is missing. {fix}"
  want, got = _cells(jupytext.read(source)), _cells(jupytext.read(ipynb))
  assert got == want, f"{ipynb.relative_to(ROOT)} is stale against {source.name}. {fix}"


# CI builds the docs first, which executes every notebook and fails on any error
# (docs/conf.py: nb_execution_mode "force", nb_execution_raise_on_error); .ci/run then sets
# this variable so the same notebooks do not run twice in one CI run.
EXECUTED_BY_DOCS = os.environ.get("NORMAX_NOTEBOOKS_EXECUTED_BY_DOCS") == "1"


@pytest.mark.slow
@pytest.mark.skipif(EXECUTED_BY_DOCS, reason="executed by this CI run's docs build")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source):
  """Executes the committed notebook with nbmake, as ``pytest --nbmake`` would.

  A subprocess keeps the kernel's output and nbmake's own pytest session out of this one
  (it would otherwise be collected under ``-n 2``). PYTHONPATH puts this checkout first, so
  the notebooks import the normax next to them even where another copy is installed.
  """
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  cmd = [
    sys.executable,
    "-m",
    "pytest",
    "--nbmake",
    "--nbmake-timeout=300",
    "-q",
    "-p",
    "no:xdist",
    str(source.with_suffix(".ipynb").relative_to(ROOT)),
  ]
  result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
