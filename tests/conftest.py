"""Strict settings for the whole suite."""

import jax
import pytest
from hypothesis import settings

# Rank promotion hides shape bugs (a (n,) bias broadcast against (n, 1)); raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

# JAX compiles every new shape: keep example counts modest and drop deadlines.
settings.register_profile("normax", max_examples=30, deadline=None, derandomize=True)
settings.load_profile("normax")


@pytest.fixture
def strict_dtypes():
  """Strict dtype promotion around normax's own kernels only (optax's break under it)."""
  with jax.numpy_dtype_promotion("strict"):
    yield
