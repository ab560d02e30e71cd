"""The training scripts' ``--help`` stands alone: every flag says what it does in its own words.

A flag's help is its ``Config`` field's trailing comment (examples/_common.py), so a comment
written for a reader of the source ("See above.") would reach ``--help`` pointing at nothing.
"""

import re

import pytest
from test_example_image import load_example

_common = load_example("_common")

# Words that point into the source file rather than saying anything.
POINTERS = re.compile(r"\b(see )?(above|below)\b", re.IGNORECASE)


@pytest.mark.parametrize(
  "script",
  [
    "image_classification",
    "char_gpt",
  ],
)
def test_every_flag_has_a_help_text_of_its_own(script):
  parser = _common.config_parser(load_example(script).Config)
  bad = {
    action.dest: action.help
    for action in parser._actions
    if action.dest != "help" and (not (action.help or "").strip() or POINTERS.search(action.help))
  }
  assert not bad, f"examples/{script}.py: flags whose help does not stand alone: {bad}"
  # The help renders (argparse %-formats each text: a bare "%" in a comment breaks --help),
  # and shows each comment as written.
  # (Compared without whitespace: argparse re-wraps lines, also at hyphens.)
  text = "".join(parser.format_help().split())
  for field, comment in _common.field_comments(load_example(script).Config).items():
    assert "".join(comment.split()) in text, (field, comment)
