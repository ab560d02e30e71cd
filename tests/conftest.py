"""Strict settings for the whole suite."""

import os
import pathlib

import jax
import pytest
from hypothesis import settings

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Rank promotion hides shape bugs (a (n,) bias broadcast against (n, 1)); raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Most of the suite's time is XLA compiling small programs, the same ones from one run to the
# next: keep them in JAX's persistent compilation cache, an ignored folder of this checkout
# (delete it at will; NORMAX_TEST_CACHE=0 switches it off). Each xdist worker has a folder of its
# own: JAX writes an entry in place, so a folder shared by two processes could hand one of them
# an entry the other is still writing (its size-limited mode locks, but rescans the folder on
# every write).
if os.environ.get("NORMAX_TEST_CACHE", "1") != "0":
  _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache" / _worker))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
