"""Training across two processes equals training in one; Orbax checkpoints move between them.

Starts ``tests/_multiprocess_worker.py`` three times at once on this machine: two processes that
join with ``jax.distributed.initialize`` (a local coordinator on a free port, gloo collectives
between the processes' CPU devices, 4 host devices each, one 2 × 4 mesh across both), and one
process with 8 host devices and the same mesh. Each trains ``examples/sharded_gpt.py``'s
character GPT with Scion and Muon under FSDP, tensor-parallel and 2-D layouts and every
``sharding=`` strategy, and the two sides exchange Orbax checkpoints saved on different meshes.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import _multiprocess_worker as worker
import numpy as np
import pytest
from _once import once_per_session, subprocess_env

WORKER = pathlib.Path(__file__).with_name("_multiprocess_worker.py")
ROOT = WORKER.parent.parent
TIMEOUT = 600
# One xdist worker runs this module (tests/conftest.py): its tests share one subprocess.
pytestmark = pytest.mark.xdist_group("multiprocess")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(out: pathlib.Path) -> dict:
  coordinator = f"localhost:{_free_port()}"
  commands = [
    [sys.executable, str(WORKER), "--out", str(out), "--num-processes", "2",
     "--process-id", str(i), "--coordinator", coordinator]
    for i in range(2)
  ] + [[sys.executable, str(WORKER), "--out", str(out)]]  # fmt: skip
  envs = []
  for i in range(3):  # Three processes at once: a compilation cache folder each.
    env = subprocess_env(f"multiprocess{i}")
    # The worker sets its own device count; it keeps the suite's other flags (tests/conftest.py).
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    envs.append(env)
  logs = [open(out / f"log{i}.txt", "w") for i in range(3)]  # noqa: SIM115
  procs = [
    subprocess.Popen(c, env=env, stdout=log, stderr=subprocess.STDOUT)
    for c, env, log in zip(commands, envs, logs, strict=True)
  ]
  try:
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
  except subprocess.TimeoutExpired:
    codes = None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
    for log in logs:
      log.close()
  if codes != [0, 0, 0]:
    tails = [(out / f"log{i}.txt").read_text()[-3000:] for i in range(3)]
    return {"error": f"exit codes {codes}\n" + "\n---\n".join(tails)}
  return _compare(out)


def _max(a, b) -> float:
  return max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b, strict=True))


def _equal(a, b) -> bool:
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _compare(out: pathlib.Path) -> dict:
  """Differences between the runs, from the processes' shards (JSON for the tests)."""
  multi = [dict(np.load(out / f"multi.{i}.npz")) for i in range(2)]
  single = [dict(np.load(out / "single.npz"))]

  def leaves(files, prefix):
    return worker.assemble(files, prefix)

  r = {"processes": [int(f["processes"]) for f in multi], "seconds": {}}
  for side, files in (("multi", multi), ("single", single)):
    r["seconds"][side] = {
      f"{k} {what}": float(files[0][f"{what}/{k}"])
      for k in ("cases", "checkpoints", "example")
      for what in ("seconds", "cpu_seconds")
    }
    r[f"example_{side}"] = {
      "losses": files[0]["example/losses"].tolist(),
      "eval": float(files[0]["example/eval"]) if side == "multi" else None,
      "resumed_at": int(files[0]["example/step"]) if side == "single" else None,
    }
  for case in worker.CASES:
    name = "/".join(case)
    m = [leaves(multi, f"{name}/{k}") for k in ("params0", "params1", "final")]
    s = [leaves(single, f"{name}/{k}") for k in ("params0", "params1", "final")]
    upd_m = [b - a for a, b in zip(m[0], m[1], strict=True)]
    upd_s = [b - a for a, b in zip(s[0], s[1], strict=True)]
    r[name] = {
      "losses_multi": multi[0][f"{name}/losses"].tolist(),
      "losses_single": single[0][f"{name}/losses"].tolist(),
      "init_equal": _equal(m[0], s[0]),
      "update_diff": _max(upd_m, upd_s),
      "update_scale": max(float(np.max(np.abs(u))) for u in upd_s),
      "final_diff": _max(m[2], s[2]),
    }
  ck = {}
  for side, files in (("multi", multi), ("single", single)):
    for k in ("saved", "restored"):
      for part in ("params", "state"):
        ck[f"{side}_{k}/{part}"] = leaves(files, f"{side}_{k}/{part}")
  ck_losses = {
    k: files[0][f"{k}/losses"]
    for k, files in (
      ("multi_uninterrupted", multi), ("multi_restored", multi), ("multi_by_hand", multi),
      ("single_restored", single), ("single_by_hand", single),
    )
  }  # fmt: skip
  finals = {k: leaves(multi if k.startswith("multi") else single, f"{k}/final") for k in ck_losses}
  r["checkpoint"] = {
    "leaves": {part: len(ck[f"multi_saved/{part}"]) for part in ("params", "state")},
    # Restored on another mesh, in another number of processes: bit for bit what was saved.
    "one_process_restores_two": all(
      _equal(ck[f"single_restored/{p}"], ck[f"multi_saved/{p}"]) for p in ("params", "state")
    ),
    "two_processes_restore_one": all(
      _equal(ck[f"multi_restored/{p}"], ck[f"single_saved/{p}"]) for p in ("params", "state")
    ),
    # Continuing from the restored checkpoint is bit for bit continuing from the saved values.
    "single_continues_exactly": np.array_equal(
      ck_losses["single_restored"], ck_losses["single_by_hand"]
    )
    and _equal(finals["single_restored"], finals["single_by_hand"]),
    "multi_continues_exactly": np.array_equal(
      ck_losses["multi_restored"], ck_losses["multi_by_hand"]
    )
    and _equal(finals["multi_restored"], finals["multi_by_hand"]),
    # Across meshes the arithmetic differs in rounding only.
    "single_vs_uninterrupted_losses": ck_losses["single_restored"].tolist(),
    "uninterrupted_losses": ck_losses["multi_uninterrupted"][1:].tolist(),
    "multi_restored_vs_single_losses": _max(
      [ck_losses["multi_restored"]], [ck_losses["single_restored"]]
    ),
    "state_changed_after_save": not _equal(ck["single_saved/state"], ck["multi_saved/state"]),
  }
  return r


@pytest.fixture(scope="session")
def results(tmp_path_factory):
  def compute():
    out = tmp_path_factory.mktemp("multiprocess")
    return _launch(out)

  data = once_per_session(tmp_path_factory, "multiprocess_results", compute)
  assert "error" not in data, f"tests/_multiprocess_worker.py failed:\n{data.get('error')}"
  return data


@pytest.mark.slow
def test_two_processes_span_the_mesh(results):
  assert results["processes"] == [2, 2]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["/".join(c) for c in worker.CASES])
def test_two_processes_train_as_one(results, case):
  r = results[case]
  assert r["init_equal"]
  losses = np.asarray(r["losses_multi"])
  np.testing.assert_allclose(losses, r["losses_single"], rtol=1e-5)
  assert losses[-1] < losses[0] - 0.2, losses  # It trains.
  # Float rounding of the cross-process sums (gloo adds in another order), no more.
  assert r["update_diff"] <= 1e-4 * r["update_scale"], r
  assert r["final_diff"] < 2e-5, r


@pytest.mark.slow
def test_orbax_checkpoint_moves_between_process_counts_and_meshes(results):
  c = results["checkpoint"]
  assert c["leaves"]["state"] > 1, c["leaves"]
  assert c["one_process_restores_two"]
  assert c["two_processes_restore_one"]
  assert c["state_changed_after_save"]  # The two checks above compare different states.


@pytest.mark.slow
def test_the_example_trains_on_two_processes_and_resumes_on_one(results):
  # examples/sharded_gpt.py's main: 2 steps on the two processes (2 × 4 mesh, 2-D layout),
  # saved at the end; the single process restores it on a 4 × 2 mesh (FSDP) for step 3.
  two, one = results["example_multi"], results["example_single"]
  assert len(two["losses"]) == 2 and np.all(np.isfinite(two["losses"]))
  assert np.isfinite(two["eval"])
  assert one["resumed_at"] == 2
  assert np.isfinite(one["losses"][0]) and one["losses"][0] < two["losses"][0]


@pytest.mark.slow
def test_restored_runs_continue_bit_for_bit(results):
  c = results["checkpoint"]
  assert c["single_continues_exactly"]
  assert c["multi_continues_exactly"]
  np.testing.assert_allclose(
    c["single_vs_uninterrupted_losses"], c["uninterrupted_losses"], rtol=1e-5
  )
  assert c["multi_restored_vs_single_losses"] < 1e-5
