"""Spectral LMOs on sharded parameters: where Newton–Schulz runs on a device mesh.

JAX's sharding is the distributed engine: every normax transform works under
``jax.jit`` on parameters sharded over a ``jax.sharding.Mesh``. A norm whose
``dualize`` couples a whole matrix (the spectral norms' Newton–Schulz or SVD)
can run in one of four ways, chosen with ``Spectral(sharding=...)``:

* ``"auto"`` (default): per orthogonalized group of matrices (a leaf, a
  scanned stack, or the same-shape leaves that ``scale_by_lmo(batch=True)``
  stacks), ``"distribute"`` for a batch of two or more matrices,
  ``"gather"`` for a lone matrix, and ``"partition"`` only for a matrix
  whose float32 iterate exceeds :data:`AUTO_PARTITION_BYTES` (too big to
  hold whole on one device). Neither ``"gather"`` nor ``"distribute"`` has a
  collective inside the iteration.
* ``"partition"``: the matrix code runs on the matrix as it is sharded and
  GSPMD partitions every Newton–Schulz matmul; collectives run inside each
  matmul of each step. No extra memory.
* ``"gather"``: each matrix (or batch of matrices) is replicated before the
  iteration, every device computes every result (redundant work, one
  all-gather per matrix, no collectives inside the iteration) and the result
  is resharded like the input.
* ``"distribute"``: the batch of matrices is padded to a multiple of the
  device count and split over every mesh axis, so each device orthogonalizes
  whole matrices, then resharded like the input (the "distributed Muon"
  layout: no redundant work, two all-to-alls from 1-D shardings).

A stack of matrices whose stack axes are already sharded (experts over an
expert-parallel mesh axis, layers over a pipeline axis; read from the
leaves' ``Explicit`` types, see :func:`leading_owners`) stays where it is
under ``"gather"`` and ``"distribute"``: each device keeps the matrices it
owns, and only the other mesh axes gather or share them out (no expert
leaves the devices that hold it).

``"gather"`` and ``"distribute"`` run the iteration inside
``jax.shard_map`` on the local (replicated or spread) block, so the
partitioner cannot split its matmuls: every collective they cost is in the
resharding before and after. The iteration runs under the named scope
``"normax_orthogonalize"``, which marks its ops in the compiled HLO
(the documentation's :doc:`/sharding` page counts the collectives inside and
outside it).

The mesh comes from the leaf's type (``Explicit`` mesh axes) or from the
``jax.set_mesh`` context. Without a mesh (one device, or a ``jit`` outside
``jax.set_mesh``) every strategy is the plain call. On an ``Explicit`` axis
the matrix code runs inside ``jax.sharding.auto_axes`` (no explicit-mode
sharding rule covers a matmul over a sharded contracted axis) and the result
keeps the input's sharding.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

Strategy = Literal["auto", "partition", "gather", "distribute"]
STRATEGIES = ("auto", "partition", "gather", "distribute")

#: ``sharding="auto"`` partitions a matrix (GSPMD splits its Newton–Schulz
#: matmuls) only when its float32 iterate exceeds this many bytes (512 MiB,
#: e.g. a 8192×16384 matrix): the iteration holds about three such matrices
#: and two short-side squares, too much to replicate on a typical
#: accelerator beside the model. Smaller matrices are kept whole on a device.
AUTO_PARTITION_BYTES = 2**29

#: Named scope of the orthogonalization's ops in traced and compiled programs.
SCOPE = "normax_orthogonalize"


def check_strategy(strategy: str) -> None:
  if strategy not in STRATEGIES:
    raise ValueError(
      f"sharding must be one of {STRATEGIES}, got {strategy!r}: 'auto' picks per group,"
      " 'partition' lets GSPMD split each Newton–Schulz matmul, 'gather' replicates each"
      " matrix, 'distribute' spreads whole matrices of a batch over the devices."
    )


# Whether "distribute" should reshard in two hops (see _hop) for the leaves
# being dualized, known from their Explicit types: yes unless every leaf has a
# matrix axis sharded over the whole mesh (FSDP), whose direct path to the
# spread stack is one all-to-all. A stack, since dualizations can nest while
# tracing; False (direct) where the types carry no sharding (Auto meshes).
_HOP = [False]


def _needs_hop(leaves) -> bool:
  def fsdp(x):
    sharding = jax.typeof(x).sharding
    names = set(sharding.mesh.axis_names)
    for entry in tuple(sharding.spec)[-2:]:
      entry = entry if isinstance(entry, tuple) else (entry,)
      if set(entry) == names:
        return True
    return False

  return not all(fsdp(x) for x in leaves if x.ndim >= 2)


def _with_hop(fn, hop: bool):
  def wrapped(*args):
    _HOP.append(hop)
    try:
      return fn(*args)
    finally:
      _HOP.pop()

  return wrapped


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
  fn = _with_hop(fn, _needs_hop([x]))
  return jax.sharding.auto_axes(fn, axes=axes, out_sharding=out)(x)


def _mesh():
  """The mesh in context (``jax.set_mesh``, or ``auto_axes`` inside it), or ``None``."""
  mesh = jax.sharding.get_abstract_mesh()
  return None if mesh.empty or mesh.size == 1 else mesh


def choose_strategy(count: int, m: int, n: int) -> str:
  """The strategy ``"auto"`` uses for ``count`` matrices of shape ``(m, n)`` on a mesh.

  ``"partition"`` when one matrix's float32 iterate exceeds
  :data:`AUTO_PARTITION_BYTES`, else ``"distribute"`` for two or more
  matrices and ``"gather"`` for one.
  """
  if 4 * m * n > AUTO_PARTITION_BYTES:
    return "partition"
  return "distribute" if count > 1 else "gather"


Owners = tuple[str, ...]


def leading_owners(x: jax.Array) -> tuple[Owners, ...]:
  """The ``Explicit`` mesh axes that shard each axis of ``x`` (``()`` where none).

  An axis whose size those mesh axes do not divide counts as unsharded.
  Outside an explicit mesh every entry is ``()``.
  """
  explicit = set(_explicit_axes(x))
  if not explicit:
    return ((),) * x.ndim
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  out = []
  for size, entry in zip(x.shape, spec, strict=True):
    names = () if entry is None else entry if isinstance(entry, tuple) else (entry,)
    names = tuple(a for a in names if a in explicit)
    ways = math.prod(sharding.mesh.shape[a] for a in names)
    out.append(names if names and size % ways == 0 else ())
  return tuple(out)


def run_sharded(fn, mats: jax.Array, strategy: Strategy, owners: Owners = ()) -> jax.Array:
  """``fn(mats)`` on a ``(..., m, n)`` batch of matrices, placed by ``strategy``.

  ``fn`` maps each matrix independently and keeps the shape. The result is
  sharded like ``mats``. With ``owners`` (mesh axes), ``mats`` is
  ``(g, c, m, n)``, its first axis sharded over ``owners`` (e.g. experts over
  an expert-parallel axis): ``"gather"`` and ``"distribute"`` keep that axis
  where it is and place the ``c`` matrices of each owner group over the other
  mesh axes only.
  """
  mesh = _mesh()
  if owners and mesh is not None and strategy != "partition":
    return _run_owned(fn, mats, strategy, owners, mesh)
  m, n = mats.shape[-2:]
  count = math.prod(mats.shape[:-2])
  if strategy == "auto" and mesh is not None:
    strategy = choose_strategy(count, m, n)
  if strategy == "partition" or mesh is None:
    with jax.named_scope(SCOPE):
      return fn(mats)
  axes = tuple(mesh.axis_names)
  if strategy == "gather":
    spec, stack = P(), mats
  else:
    stack = mats.reshape(count, m, n)
    pad = -count % mesh.size
    if pad:  # Zero matrices orthogonalize to zero; they only fill the last devices.
      stack = jnp.concatenate([stack, jnp.zeros((pad, m, n), stack.dtype)])
    spec = P(axes)
  # Inside shard_map each device holds whole matrices: no collective can be
  # placed in the iteration. Gather's output is replicated (check_vma off: the
  # replicated input makes every device compute the same result).
  local = jax.shard_map(
    _scoped(fn), mesh=mesh, in_specs=spec, out_specs=spec, axis_names=set(axes), check_vma=False
  )
  hop = strategy == "distribute" and _HOP[-1]
  if hop:
    stack = _hop(stack, axes)
  out = local(stack)
  if hop:
    out = _hop(out, axes)
  if strategy == "distribute":
    out = out[:count].reshape(mats.shape)
  return out


def _run_owned(fn, mats: jax.Array, strategy: Strategy, owners: Owners, mesh) -> jax.Array:
  """``run_sharded`` for a ``(g, c, m, n)`` stack whose first axis ``owners`` shard."""
  g, c, m, n = mats.shape
  groups = math.prod(mesh.shape[a] for a in owners)
  rest = tuple(a for a in mesh.axis_names if a not in owners)
  ways = math.prod(mesh.shape[a] for a in rest)
  # Each owner group's matrices side by side: a local reshape of the sharded first axis.
  stack = mats.reshape(groups, g // groups * c, m, n)
  count = stack.shape[1]
  if strategy == "auto":
    strategy = choose_strategy(count, m, n)
    if strategy == "partition":
      with jax.named_scope(SCOPE):
        return fn(mats)
  if strategy == "gather" or not rest:
    spec = P(owners)
  else:
    pad = -count % ways
    if pad:  # Zero matrices orthogonalize to zero; they only fill the last devices.
      stack = jnp.concatenate([stack, jnp.zeros((groups, pad, m, n), stack.dtype)], axis=1)
    spec = P(owners, rest)
  local = jax.shard_map(
    _scoped(fn),
    mesh=mesh,
    in_specs=spec,
    out_specs=spec,
    axis_names=set(mesh.axis_names),
    check_vma=False,
  )
  hop = strategy == "distribute" and len(rest) > 1 and _HOP[-1]
  if hop:
    stack = _hop_owned(stack, owners, rest)
  out = local(stack)
  if hop:
    out = _hop_owned(out, owners, rest)
  return out[:, :count].reshape(g, c, m, n)


def _hop_owned(stack: jax.Array, owners: Owners, rest: tuple[str, ...]) -> jax.Array:
  """:func:`_hop` for an owned stack: the owners' axis kept, the matrices' axis on the first
  other mesh axis."""
  u = P.UNCONSTRAINED
  return jax.lax.with_sharding_constraint(stack, P(owners, rest[0], u, u))


def _hop(stack: jax.Array, axes: tuple[str, ...]) -> jax.Array:
  """Constrains the stacked axis to the first mesh axis, the rest unconstrained.

  Between a leaf sharded over part of the mesh or tiled on both matrix axes
  (tensor parallel, 2-D) and the stack split over the whole mesh, XLA's
  partitioner finds no direct resharding and replicates much of the stack;
  one mesh axis at a time, each hop is an all-to-all. (From an FSDP
  sharding the direct path is one all-to-all, and the hop would cost a
  gather.)
  """
  if len(axes) < 2:
    return stack
  u = P.UNCONSTRAINED
  return jax.lax.with_sharding_constraint(stack, P(axes[0], u, u))


def _scoped(fn):
  def scoped(x):
    with jax.named_scope(SCOPE):
      return fn(x)

  return scoped


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
  fn = _with_hop(fn, _needs_hop(leaves))
  return jax.sharding.auto_axes(fn, axes=tuple(axes), out_sharding=out)(leaves)
