"""Smoke tests of examples/qk_clip.py on a small text the tests write."""

import json

import numpy as np
import pytest
from test_example_image import load_example

qc = load_example("qk_clip")

TEXT = (
  "to be, or not to be, that is the question:\n"
  "whether 'tis nobler in the mind to suffer\n"
  "the slings and arrows of outrageous fortune,\n"
) * 60


def tiny(tmp_path, **kw):
  path = tmp_path / "text.txt"
  path.write_text(TEXT, encoding="utf-8")
  defaults = dict(
    steps=40, batch_size=8, block_size=16, n_embd=32, n_layer=1, n_head=2, lr=2**-3,
    seeds="0", text=str(path), out=str(tmp_path / "r.json"), plot=str(tmp_path / "r.png"),
    eval_batches=2,
  )  # fmt: skip
  return qc.Config(**(defaults | kw))


@pytest.mark.slow
def test_the_clip_holds_the_max_logit_down(tmp_path):
  """A threshold the unclipped run passes: the clipped run's max logit stays far lower, the files
  are written."""
  result = qc.main(tiny(tmp_path, tau=2.0))
  plain, clipped = result["runs"]
  assert not plain["clip"] and clipped["clip"]
  assert max(plain["max_logit"]) > 4.0  # the unclipped logits pass 2τ
  late = slice(20, None)
  assert max(clipped["max_logit"][late]) < 0.75 * min(plain["max_logit"][late])
  assert json.loads((tmp_path / "r.json").read_text())["summary"]["clip"]["eval_loss"]["n"] == 1
  assert (tmp_path / "r.png").stat().st_size > 0


@pytest.mark.slow
def test_a_threshold_never_reached_changes_nothing(tmp_path):
  """τ above every logit: the clipped run is the unclipped one, loss for loss."""
  result = qc.main(tiny(tmp_path, tau=1e6, steps=10, plot=None))
  plain, clipped = result["runs"]
  assert max(plain["max_logit"]) < 1e6
  np.testing.assert_array_equal(plain["train_loss"], clipped["train_loss"])
  np.testing.assert_array_equal(plain["max_logit"], clipped["max_logit"])
