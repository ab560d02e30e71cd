"""Spectral LMOs on sharded parameters: where Newton–Schulz runs on a device mesh.

JAX's sharding is the distributed engine: every normax transform works under
``jax.jit`` on parameters sharded over a ``jax.sharding.Mesh``. A norm whose
``dualize`` couples a whole matrix (the spectral norms' Newton–Schulz or SVD)
can run in one of three ways, chosen with ``Spectral(sharding=...)``:

* ``"partition"`` (default): the matrix code runs on the matrix as it is
  sharded and GSPMD partitions every Newton–Schulz matmul; collectives run
  inside each matmul of each step. No extra memory.
* ``"gather"``: each matrix (or batch of matrices) is replicated before the
  iteration, every device computes every result (redundant work, one
  all-gather per matrix, no collectives inside the iteration) and the result
  is resharded like the input.
* ``"distribute"``: the batch of matrices — a scanned stack, or the
  same-shape leaves that ``scale_by_lmo(..., batch=True)`` orthogonalizes in
  one call — is padded to a multiple of the device count and split over every
  mesh axis, so each device orthogonalizes whole matrices, then resharded
  like the input (the "distributed Muon" layout: no redundant work, two
  all-to-alls).

The mesh comes from the leaf's type (``Explicit`` mesh axes) or from the
``jax.set_mesh`` context. Without a mesh (one device, or a ``jit`` outside
``jax.set_mesh``) ``"gather"`` and ``"distribute"`` are the plain call. On an
``Explicit`` axis the matrix code runs inside ``jax.sharding.auto_axes`` (no
explicit-mode sharding rule covers a matmul over a sharded contracted axis)
and the result keeps the input's sharding.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

Strategy = Literal["partition", "gather", "distribute"]
STRATEGIES = ("partition", "gather", "distribute")


def check_strategy(strategy: str) -> None:
  if strategy not in STRATEGIES:
    raise ValueError(
      f"sharding must be one of {STRATEGIES}, got {strategy!r}: 'partition' lets GSPMD"
      " split each Newton–Schulz matmul, 'gather' replicates each matrix, 'distribute'"
      " spreads whole matrices of a batch over the devices."
    )


def _explicit_axes(x: jax.Array) -> tuple[str, ...]:
  """Names of the ``Explicit`` mesh axes of ``x``'s type (empty outside one)."""
  mesh = jax.typeof(x).sharding.mesh
  if mesh.empty:
    return ()
  pairs = zip(mesh.axis_names, mesh.axis_types, strict=True)
  return tuple(n for n, t in pairs if t == AxisType.Explicit)


def with_auto_axes(fn, x: jax.Array, *, keep: int | None = None) -> jax.Array:
  """``fn(x)``, run with ``x``'s ``Explicit`` mesh axes switched to ``Auto``.

  GSPMD then partitions ``fn`` however ``x`` is sharded. The result is
  sharded like ``x``'s first ``keep`` axes (all of them by default: ``fn``
  keeps the shape), replicated along the rest. Outside an explicit mesh this
  is ``fn(x)``.
  """
  axes = _explicit_axes(x)
  if not axes:
    return fn(x)
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  if keep is not None:
    spec = spec[:keep]
  out = NamedSharding(sharding.mesh, P(*spec))
  return jax.sharding.auto_axes(fn, axes=axes, out_sharding=out)(x)


def _mesh():
  """The mesh in context (``jax.set_mesh``, or ``auto_axes`` inside it), or ``None``."""
  mesh = jax.sharding.get_abstract_mesh()
  return None if mesh.empty or mesh.size == 1 else mesh


def run_sharded(fn, mats: jax.Array, strategy: Strategy) -> jax.Array:
  """``fn(mats)`` on a ``(..., m, n)`` batch of matrices, placed by ``strategy``.

  ``fn`` maps each matrix independently and keeps the shape. The result is
  sharded like ``mats``.
  """
  mesh = _mesh()
  if strategy == "partition" or mesh is None:
    return fn(mats)
  if strategy == "gather":
    out = fn(jax.lax.with_sharding_constraint(mats, P()))
  else:
    m, n = mats.shape[-2:]
    count = math.prod(mats.shape[:-2])
    stack = mats.reshape(count, m, n)
    pad = -count % mesh.size
    if pad:  # Zero matrices orthogonalize to zero; they only fill the last devices.
      stack = jnp.concatenate([stack, jnp.zeros((pad, m, n), stack.dtype)])
    spread = P(tuple(mesh.axis_names), None, None)
    out = fn(jax.lax.with_sharding_constraint(stack, spread))
    out = jax.lax.with_sharding_constraint(out, spread)
    out = out[:count].reshape(mats.shape)
  return out


def with_auto_axes_tree(fn, leaves: list) -> list:
  """``fn(leaves)`` (a list to a same-shaped list) with ``Explicit`` axes made ``Auto``.

  Each output is sharded like its leaf. Lets grouped computations (the
  batched Newton–Schulz of ``scale_by_lmo``) stack leaves sharded in
  different ways. Outside an explicit mesh this is ``fn(leaves)``.
  """
  axes = sorted({a for g in leaves for a in _explicit_axes(g)})
  if not axes:
    return fn(leaves)
  out = [jax.typeof(g).sharding for g in leaves]
  return jax.sharding.auto_axes(fn, axes=tuple(axes), out_sharding=out)(leaves)
