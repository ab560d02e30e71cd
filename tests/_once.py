"""Runs an expensive computation once per test session, even under pytest-xdist.

Each xdist worker process would run a session fixture of its own, i.e. an expensive subprocess
once per worker, competing for the same cores. The first worker to get here claims the run (an
exclusive file create in the temp directory the workers share) and writes the result as JSON;
the others wait for the file.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable

import jax
import pytest


def once_per_session(tmp_path_factory, name: str, compute: Callable[[], dict]) -> dict:
  """``compute()`` (a JSON-able dict) in one xdist worker; the others read its result.

  A computation that raises gives ``{"error": repr(e)}`` to every worker.
  """
  if "PYTEST_XDIST_WORKER" not in os.environ:
    return compute()
  shared = tmp_path_factory.getbasetemp().parent
  done, claim = shared / f"{name}.json", shared / f"{name}.claim"
  try:
    os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
  except FileExistsError:
    deadline = time.monotonic() + 900
    while not done.exists():
      if time.monotonic() > deadline:
        pytest.fail(f"No results in {done} after 15 minutes.")
      time.sleep(1.0)
    return json.loads(done.read_text())
  try:
    data = compute()
  except Exception as e:  # Timeout or crash: tell the waiting workers too.
    data = {"error": repr(e)}
  partial = done.with_suffix(".partial")
  partial.write_text(json.dumps(data))
  partial.replace(done)  # Atomic: a waiting worker never reads half a file.
  return data


def subprocess_env(cache_name: str) -> dict[str, str]:
  """``os.environ`` for a JAX subprocess of the suite, with a compilation cache of its own.

  The subprocess inherits the suite's XLA flags (set in ``tests/conftest.py``). When the suite
  keeps JAX's persistent compilation cache, the subprocess gets a folder beside the workers',
  ``.jax_cache/<cache_name>``: one per process, as JAX writes an entry in place.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cache = jax.config.jax_compilation_cache_dir
  if cache:
    env["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(cache).parent / cache_name)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"] = "none"
  return env
