"""normax on parameters sharded over 8 host CPU devices (FSDP, tensor parallel, replicated).

JAX fixes its device count when it starts, and the test process already
runs on one device, so the checks run in a subprocess
(``tests/_sharding_worker.py``) with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; it computes every
case sharded and on one device without a mesh, and these tests assert on the
differences and on the output shardings it reports.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _once import once_per_session, subprocess_env

import normax

WORKER = pathlib.Path(__file__).with_name("_sharding_worker.py")
ROOT = WORKER.parent.parent
LAYOUTS = ("replicated", "fsdp", "tp_in", "tp_out", "2d")
STRATEGIES = ("partition", "gather", "distribute")
HLO_LAYOUTS = ("fsdp", "tp_in", "tp_out", "2d")
# Newton–Schulz in float32: partitioned matmuls sum in another order.
TOL = 1e-5
# One xdist worker runs this module (tests/conftest.py): its tests share one subprocess.
pytestmark = pytest.mark.xdist_group("sharding")


def _run_worker() -> dict:
  env = subprocess_env("sharding")
  # Keeps the suite's own flags (tests/conftest.py) and adds the eight host devices.
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  proc = subprocess.run(
    [sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=600
  )
  if proc.returncode != 0:
    return {"error": proc.stderr[-4000:]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def results(tmp_path_factory):
  """The worker's results, computed once per test session even under pytest-xdist."""
  data = once_per_session(tmp_path_factory, "sharding_results", _run_worker)
  assert "error" not in data, f"tests/_sharding_worker.py failed:\n{data.get('error')}"
  return data


# Only the tests that use the 8-device worker's results are slow (one subprocess for them all).
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ("auto", *STRATEGIES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_explicit_mesh_matches_one_device_and_keeps_shardings(results, layout, strategy):
  r = results[f"explicit/{layout}/{strategy}/batch=True"]
  assert r["diff"] < TOL
  assert r["sharding_kept"], "updates lost the gradients' sharding"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_explicit_mesh_unbatched(results, strategy):
  r = results[f"explicit/2d/{strategy}/batch=False"]
  assert r["diff"] < TOL
  assert r["sharding_kept"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_auto_mesh_matches_one_device(results, layout, strategy):
  # On an Auto mesh jit's out_shardings pin the updates' shardings (see
  # docs/sharding.md); what is tested here is the values.
  assert results[f"auto/{layout}/{strategy}"]["diff"] < TOL


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("optimizer", ["muon", "scion"])
def test_optimizers_three_steps(results, optimizer, strategy):
  r = results[f"{optimizer}/{strategy}"]
  assert r["diff"] < TOL
  assert r["sharding_kept"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_training_on_data_model_mesh(results, strategy):
  ref = np.asarray(results["train/reference"]["losses"])
  r = results[f"train/{strategy}"]
  losses = np.asarray(r["losses"])
  assert losses[-5:].mean() < 0.5 * losses[0], losses
  # 20 steps of float32 training: the curves agree to rounding growth.
  np.testing.assert_allclose(losses, ref, rtol=2e-3, atol=2e-4)
  assert r["diff"] < 5e-3  # Parameters after training (shardings pinned by out_shardings).


@pytest.mark.slow
def test_docs_example_trains(results):
  r = results["docs/example"]
  # 50 Scion steps fit sin(x) (variance ~0.4) to a small fraction of it.
  assert r["loss"] < 0.05
  assert r["sharding_kept"]


@pytest.mark.slow
@pytest.mark.parametrize("tree", ["list", "scan"])
@pytest.mark.parametrize("layout", HLO_LAYOUTS)
def test_default_has_no_collective_inside_the_iteration(results, tree, layout):
  # From the compiled HLO of the default update on a GPT-like tree (per layer
  # four d×d, a d×4d and a 4d×d matrix; depth 2): no collective under the
  # orthogonalization's named scope, and each matrix moved about once in,
  # once out (bytes per device over the bytes of all the matrices).
  r = results[f"hlo/{tree}/{layout}/auto"]
  assert r["inside_count"] == 0, r["inside_ops"]
  assert r["outside_count"] > 0  # The resharding is seen, so the counter works.
  assert r["bytes / matrices"] <= 2.0, r


@pytest.mark.slow
@pytest.mark.parametrize("tree", ["list", "scan"])
def test_partition_has_collectives_inside_the_iteration(results, tree):
  # The control: GSPMD splits the Newton–Schulz matmuls of a row-sharded
  # matrix, an all-gather per step at least (5 steps, two shape groups).
  r = results[f"hlo/{tree}/fsdp/partition"]
  assert r["inside_ops"]["all-gather"] >= 10, r["inside_ops"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ("auto", *STRATEGIES))
@pytest.mark.parametrize("optimizer", ["scion", "muon"])
def test_moe_on_an_expert_parallel_mesh_matches_one_device(results, optimizer, strategy):
  # The zoo's routed MoE, roles from its computation; experts over "expert", FSDP over "data".
  r = results[f"moe/{optimizer}/{strategy}"]
  assert r["diff"] < TOL
  assert r["sharding_kept"]
  assert r["idle_zero"]  # The expert that received no tokens gets a zero update.


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ("auto", "gather", "distribute"))
def test_experts_stay_on_the_devices_that_own_them(results, strategy):
  # From the compiled HLO of the update of the expert weights (layers, experts, d, f) and
  # (experts, d, f): nothing moves inside the iteration, and each device sends or receives at
  # most twice its expert group's share of the weights (2/4 of them on 4 expert groups), where
  # gathering the expert axis would bring each device at least the 3/4 it does not hold.
  r = results[f"moe/experts/{strategy}"]
  assert r["diff"] < TOL and r["sharding_kept"]
  assert r["inside_count"] == 0, r["inside_ops"]
  assert r["bytes / experts"] <= 2 / r["expert_groups"], r
  if strategy != "gather":  # "gather" gathers each matrix's FSDP axis within its expert group.
    assert r["outside_ops"]["all-gather"] == 0, r["outside_ops"]
  # The same holds for the optimizers' whole update (routers and attention included).
  for optimizer in ("scion", "muon"):
    whole = results[f"moe/{optimizer}/{strategy}"]
    assert whole["inside_count"] == 0 and whole["bytes / experts"] < 1 - 1 / r["expert_groups"]


@pytest.mark.slow
def test_partitioned_experts_communicate_inside_the_iteration(results):
  r = results["moe/experts/partition"]  # The control: GSPMD splits each expert's matmuls.
  assert r["inside_ops"]["all-gather"] >= 10, r["inside_ops"]
  assert r["bytes / experts"] > 1


@pytest.mark.slow
def test_auto_mesh_keeps_experts_local_under_explicit_axes(results):
  # On an Auto mesh the update runs under jax.sharding.explicit_axes (docs/sharding.md).
  r = results["moe/auto_mesh_explicit_axes"]
  assert r["diff"] < TOL
  assert r["inside_count"] == 0 and r["bytes / experts"] < 1 - 1 / r["expert_groups"]


def test_auto_strategy_choice():
  from normax._sharding import AUTO_PARTITION_BYTES, choose_strategy

  assert choose_strategy(1, 768, 3072) == "gather"
  assert choose_strategy(12, 768, 3072) == "distribute"
  side = int((AUTO_PARTITION_BYTES / 4) ** 0.5) + 1  # A float32 matrix over the threshold.
  assert choose_strategy(1, side, side) == "partition"
  assert choose_strategy(8, side, side) == "partition"


def test_unknown_strategy_is_an_error():
  with pytest.raises(ValueError, match="sharding must be one of"):
    normax.Spectral(sharding="scatter")
  with pytest.raises(ValueError, match="sharding must be one of"):
    normax.muon(0.1, orthogonalizer=normax.Orthogonalizer(method="newton_schulz", sharding="all"))


@pytest.mark.parametrize("strategy", ["gather", "distribute"])
def test_strategies_without_a_mesh_are_the_plain_call(strategy):
  g = {
    "a": jax.random.normal(jax.random.key(0), (3, 8, 16)),
    "b": jnp.arange(128.0).reshape(16, 8) % 7 - 3,
  }
  ref = normax.scale_by_lmo(normax.Spectral(method="svd"))
  tx = normax.scale_by_lmo(normax.Spectral(method="svd", sharding=strategy))
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  want, _ = ref.update(g, ref.init(g))
  for k in g:
    np.testing.assert_allclose(out[k], want[k], atol=1e-5)
