"""The Python snippets of the README and the roles, migration, guide and QK-Clip pages run as
written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [
  ROOT / "README.md",
  ROOT / "docs" / "roles.md",
  ROOT / "docs" / "migration.md",
  ROOT / "docs" / "guide.md",
  ROOT / "docs" / "qk_clip.md",
]
BLOCKS = [
  (page.name, i, block)
  for page in PAGES
  for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL))
]


@pytest.mark.slow  # Many compiles: in the full suite (CI), not the fast loop.
@pytest.mark.parametrize(("page", "index", "block"), BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_snippet_runs(page, index, block):
  exec(compile(block, f"{page}[python block {index}]", "exec"), {})
