"""examples/tune.py: the tuned comparison's protocol, walked on made-up losses (no training)."""

import csv
import io
import math

import pytest
from test_example_image import load_example

compare = load_example("compare")
tune = load_example("tune")

# Each optimizer's made-up optimum: log2(lr) at width 64 and 200 steps (it moves by -1 at width
# 128 and by -1 per 4× of steps), the warmup and own settings that help it.
OPTIMUM = {"adamw": -2, "muon": -8, "scion": -6, "optax_muon": -8}


def made_up_loss(run: dict) -> float:
  name, lr = run["optimizer"], run["lr"]
  if name in tune.FREE:
    return 2.5 - 0.1 * math.log10(1 + 1e4 * float(run["settings"].partition("=")[2]))
  best = OPTIMUM[name] - (run["width"] == 128) - math.log(run["steps"] / 200, 4)
  loss = 2.0 + 0.01 * (math.log2(lr) - best) ** 2
  if name == "adamw":  # Warmup helps AdamW; β2 0.98 without weight decay is its best pair.
    loss -= 0.02 * run["warmup"] / run["steps"]
    loss -= 0.005 * (run["settings"] == "b2=0.98,weight_decay=0")
  if name == "muon":  # The AdamW part's best rate: 2^-7.
    adam_lr = float(run["settings"].partition("=")[2])
    loss += 0.001 * (math.log2(adam_lr) + 7) ** 2
  if name == "scion" and lr >= 2**-4:
    return math.nan  # Diverges.
  return loss + 1e-3 * run["seed"]


def fake_train(calls: list):
  def train(run: dict) -> str:
    calls.append(run)
    loss = made_up_loss(run)
    row = dict(
      task="gpt", optimizer=run["optimizer"], lr=run["lr"], width=run["width"],
      warmup=run["warmup"], batch_size=run["batch_size"], radii=run["radii"],
      settings=run["settings"], seed=run["seed"], steps=run["steps"], step=run["steps"],
      train_loss=loss, eval_loss=loss, eval_acc="", seconds=0.0,
    )  # fmt: skip
    text = io.StringIO()
    csv.writer(text).writerow([row[c] for c in compare.COLUMNS])
    return text.getvalue()

  return train


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
  out = tmp_path_factory.mktemp("tuned")
  calls: list = []
  tuned = tune.run_protocol(
    str(out), budgets=((128, 800), (128, 1600)), workers=0, train_fn=fake_train(calls)
  )
  return out, tuned, calls


def test_stage_a_follows_each_coordinate(walked):
  _, tuned, _ = walked
  adamw = tuned["adamw", 64, 200]
  # Stage 1's grid ends at 2^-5; the last stage walks past it to the optimum 2^-2, which is
  # inside once 2^-1 has run.
  assert adamw["lr"] == 2**-2
  assert adamw["warmup"] == 0.25 and adamw["settings"] == {"b2": 0.98, "weight_decay": 0.0}
  muon = tuned["muon", 64, 200]
  assert muon["lr"] == 2**-8 and muon["settings"] == {"adam_lr": 2**-7}
  assert muon["warmup"] == 0.0  # Warmup does not change its loss: the tie keeps no warmup.
  assert tuned["scion", 64, 200]["lr"] == 2**-6


def test_edges_are_extended_until_the_best_is_inside(walked):
  _, _, calls = walked
  lrs = {r["lr"] for r in calls if r["optimizer"] == "adamw" and r["steps"] == 200}
  assert 2**-1 in lrs and 2**0 not in lrs
  # Muon's optimum 2^-8 is below stage 1's grid (2^-7 ... 2^-3).
  lrs = {r["lr"] for r in calls if r["optimizer"] == "muon" and r["steps"] == 200}
  assert 2**-9 in lrs and 2**-10 not in lrs


def test_budgets_rebracket_the_learning_rate_with_stage_a_settings(walked):
  _, tuned, _ = walked
  for name, lr in (("adamw", 2**-4), ("muon", 2**-10), ("scion", 2**-8)):
    point = tuned[name, 128, 800]
    assert point["lr"] == lr, name
    assert point["settings"] == tuned[name, 64, 200]["settings"]
    assert point["warmup"] == tuned[name, 64, 200]["warmup"]
  # The references also ran at 128 × 1600 steps, the others not.
  assert tuned["adamw", 128, 1600]["lr"] == 2**-5
  assert ("scion", 128, 1600) not in tuned


def test_checks_and_free_methods_take_no_sweep(walked):
  _, tuned, calls = walked
  optax_runs = [r for r in calls if r["optimizer"] == "optax_muon"]
  assert {(r["lr"], r["steps"], r["seed"]) for r in optax_runs} == {
    (tuned["muon", 128, 800]["lr"], 800, s) for s in tune.SEEDS
  }
  for name in tune.FREE:
    assert tuned[name, 64, 200]["settings"] == {"relative_d0": 1e-2}
    runs = [r for r in calls if r["optimizer"] == name and r["width"] == 128]
    assert {(r["lr"], r["settings"]) for r in runs} == {(1.0, "relative_d0=0.01")}


def test_every_point_has_three_seeds_and_runs_once(walked):
  _, _, calls = walked
  keys = [compare.run_key(r) for r in calls]
  assert len(keys) == len(set(keys))
  points = {compare.run_key(r, compare.POINT) for r in calls}
  assert len(keys) == 3 * len(points)


def test_a_finished_protocol_runs_nothing_again(walked):
  out, tuned, _ = walked

  def refuse(run):
    raise AssertionError(f"ran {run} again")

  again = tune.run_protocol(str(out), budgets=((128, 800), (128, 1600)), workers=0, train_fn=refuse)
  assert again == tuned


def test_winner_rule():
  a, b, c = ({"lr": lr} for lr in (1.0, 2.0, 4.0))
  assert tune.winner([(a, 2.0), (b, 1.9), (c, math.inf)]) == b
  assert tune.winner([(a, 2.0), (b, 2.00005)], incumbent=b) == b  # A tie keeps the incumbent.
  assert tune.winner([(c, 2.0), (a, 2.00005)]) == a  # Else the smaller learning rate.
  with pytest.raises(RuntimeError, match="diverged"):
    tune.winner([(a, math.inf)])


def test_parse_budgets():
  assert tune.parse_budgets("64x800, 128x200") == ((64, 800), (128, 200))
  with pytest.raises(ValueError, match="WIDTHxSTEPS"):
    tune.parse_budgets("128")
