"""Sphinx configuration of normax's documentation site.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
The pages are Markdown (MyST); the API reference comes from the docstrings (autodoc + napoleon);
the notebooks are executed from their committed ``.ipynb`` and shown with their outputs.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys

from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring

logger = logging.getLogger(__name__)
DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # Document this checkout, not another installed copy.

project = "normax"
author = "the normax authors"
copyright = "2026, the normax authors"

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "myst_nb",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# -- notebooks: the committed .ipynb (no outputs), copied in and executed on every build --
# The outputs shown are those of this checkout's code; an error in a cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
# The kernels import the normax of this checkout, as autodoc does.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
NOTEBOOKS = DOCS / "notebooks"
NOTEBOOKS.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
  shutil.copyfile(_nb, NOTEBOOKS / _nb.name)

# -- Markdown ----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# -- API reference -----------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = "normax"

# -- docstring math: readable in help(), rendered by MathJax here --------------
# Docstrings write their formulas in plain Unicode inside ``.. math::`` blocks, e.g.
# ``x ← (1 − γμ)·x − γρ·dualize(d)``, so that ``help()`` shows them as they read. Here
# each such block is rewritten into TeX for MathJax: words become upright text,
# ``d_out`` a subscript, ``√(…)`` a root, ``‖·‖``, ``†``, ``ᵀ``, ``←`` their TeX forms.

_SYMBOLS = {
  "‖": r"\|",
  "←": r"\leftarrow ",
  "↦": r"\mapsto ",
  "·": r"\cdot ",
  "†": r"^{\dagger}",
  "ᵀ": r"^{\top}",
  "²": "^{2}",
  "³": "^{3}",
  "⁵": "^{5}",
  "ᵢ": "_{i}",
  "ⱼ": "_{j}",
  "ₖ": "_{k}",
  "ₗ": "_{l}",
  "⟨": r"\langle ",
  "⟩": r"\rangle ",
  "−": "-",
  "∈": r"\in ",
  "≤": r"\le ",
  "…": r"\dots ",
}
_TOKEN = re.compile(
  r"√\(([^()]*)\)|([_^])\(([^()]*)\)|_([A-Za-z]{2,})|(?<![\\A-Za-z])([A-Za-z]{2,})"
)


def _word(w: str) -> str:
  return (
    r"\operatorname{" + w + "}"
    if w in ("argmax", "argmin", "max", "min")
    else (r"\mathrm{" + w + "}")
  )


def unicode_to_tex(line: str) -> str:
  """One line of a docstring's Unicode formula as TeX (see the note above)."""

  def sub(m: re.Match) -> str:
    root, op, group, sub_word, word = m.groups()
    if root is not None:
      return r"\sqrt{" + unicode_to_tex(root) + "}"
    if op is not None:
      return op + "{" + unicode_to_tex(group) + "}"
    if sub_word is not None:
      return r"_{\mathrm{" + sub_word + "}}"
    return _word(word)

  line = re.sub(r"(?<=\S) {2,}(?=\S)", r" \\qquad ", line)  # Wide gaps separate formulas.
  line = _TOKEN.sub(sub, line)
  line = re.sub(r"(?<=\}) (?=\\mathrm)", r"\\ ", line)  # Keep spaces between words.
  return "".join(_SYMBOLS.get(c, c) for c in line)


def _math_blocks_to_tex(app, what, name, obj, options, lines):
  del app, what, name, obj, options
  i = 0
  while i < len(lines):
    if lines[i].strip() != ".. math::":
      i += 1
      continue
    indent = len(lines[i]) - len(lines[i].lstrip())
    i += 1
    while i < len(lines) and (
      not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
    ):
      if lines[i].strip():
        lines[i] = unicode_to_tex(lines[i])
      i += 1


# -- constants: their own text, not their type's ---------------------------------
# A public constant (``normax.QUINTIC``, ``normax.presets.HEAD_PATTERNS``) is re-exported from
# the private module that defines it, with a ``#:`` comment above the definition. autodoc looks
# for that comment in the re-exporting module and, finding none, shows the value's type's
# docstring (``tuple``'s). Here the comment is taken from the defining module instead; a public
# constant without one fails the build.


def _defining_comment(name: str, obj) -> list[str] | None:
  attr = name.rpartition(".")[2]
  for modname in sorted(m for m in sys.modules if m == "normax" or m.startswith("normax.")):
    if getattr(sys.modules[modname], attr, None) is not obj:
      continue
    try:
      docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    except PycodeError:
      continue
    if ("", attr) in docs:
      return list(docs[("", attr)])
  return None


def _constant_docs(app, what, name, obj, options, lines):
  del app, options
  if what != "data" or not name.startswith("normax."):
    return
  comment = _defining_comment(name, obj)
  if comment is not None:
    lines[:] = comment
  elif lines == prepare_docstring(type(obj).__doc__ or ""):
    logger.warning(f"{name} has no '#:' comment where it is defined; write one above it.")


def _public_bases(app, name, obj, options, bases):
  """A private base class (``_SliceLp``) is shown as the public classes it derives from."""
  del app, name, obj, options
  i = 0
  while i < len(bases):
    if bases[i].__name__.startswith("_"):
      bases[i : i + 1] = [b for b in bases[i].__bases__ if b not in bases]
    else:
      i += 1


def setup(app):
  app.connect("autodoc-process-docstring", _math_blocks_to_tex)
  app.connect("autodoc-process-docstring", _constant_docs)
  app.connect("autodoc-process-bases", _public_bases)
