"""Strict settings for the whole suite."""

import os
import pathlib
import re
import shutil

# The suite compiles thousands of small programs, each run a few times: most of its time is XLA
# compiling them, and on CPU much of that is LLVM optimising machine code that barely runs.
# Compile at XLA's lowest backend optimisation level (a third less time from a cold cache; the
# programs compute the same operations, and every comparison runs both sides under the same
# flags). NORMAX_TEST_FAST_COMPILE=0 compiles as users do (the suite passes either way; CI's
# wheel check and docs build run at the default level). Set before JAX starts; subprocesses
# inherit it.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("NORMAX_TEST_FAST_COMPILE", "1") != "0":
  _flags = os.environ.get("XLA_FLAGS", "")
  if FAST_COMPILE_FLAGS not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} {FAST_COMPILE_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Rank promotion hides shape bugs (a (n,) bias broadcast against (n, 1)); raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Most of the suite's time is XLA compiling small programs, the same ones from one run to the
# next: keep them in JAX's persistent compilation cache, an ignored folder of this checkout
# (delete it at will; NORMAX_TEST_CACHE=0 switches it off). Each xdist worker writes to a folder
# of its own: JAX writes an entry in place, so a folder shared by two running processes could
# hand one of them an entry the other is still writing. When the run ends, every worker's folder
# gets the entries the others compiled (``pytest_sessionfinish``): xdist hands a test to either
# worker, so each needs them all. That works because an entry's key does not depend on the folder
# it sits in once JAX's GPU autotuning cache (a folder inside it, part of the key) is off.
CACHE = ROOT / ".jax_cache" if os.environ.get("NORMAX_TEST_CACHE", "1") != "0" else None
if CACHE is not None:
  jax.config.update(
    "jax_compilation_cache_dir", str(CACHE / os.environ.get("PYTEST_XDIST_WORKER", "main"))
  )
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def _share_cache_entries(root: pathlib.Path) -> None:
  """Links every entry of each worker folder (``main``, ``gw0``, ...) into the others."""
  folders = [f for f in root.iterdir() if f.is_dir() and re.fullmatch(r"main|gw\d+", f.name)]
  entries = {f: {e.name for e in f.iterdir() if e.is_file()} for f in folders}
  for source, names in entries.items():
    for target in folders:
      for name in names - entries[target]:
        try:
          os.link(source / name, target / name)
        except OSError:  # No hard links here (another file system): copy, then rename.
          partial = target / f".{name}.partial"
          shutil.copyfile(source / name, partial)
          partial.replace(target / name)
        entries[target].add(name)


def pytest_sessionfinish(session):
  # Once per run, by the process that is not an xdist worker, after the workers have stopped.
  if CACHE is not None and CACHE.is_dir() and not hasattr(session.config, "workerinput"):
    _share_cache_entries(CACHE)


# JAX compiles every new shape: keep example counts modest and drop deadlines.
settings.register_profile("normax", max_examples=30, deadline=None, derandomize=True)
settings.load_profile("normax")


# Under ``-n N``, each ``xdist_group`` runs on one worker (xdist's ``--dist loadgroup``): the
# tests that read one expensive subprocess's results (the 8-device sharding worker, the
# two-process run) form a group; spread over the workers, all but one would sit waiting for that
# result instead of running other tests. The controller picks the scheduler from ``dist``; each
# worker tags its tests with their group only when told to (``loadgroup``), so tell it.
def pytest_configure(config):
  if getattr(config.option, "dist", "no") == "load":
    config.option.dist = "loadgroup"
  if getattr(config, "workerinput", {}).get("normax_loadgroup"):
    config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
  node.workerinput["normax_loadgroup"] = node.config.getoption("dist") == "loadgroup"


@pytest.fixture
def strict_dtypes():
  """Strict dtype promotion around normax's own kernels only (optax's break under it)."""
  with jax.numpy_dtype_promotion("strict"):
    yield
