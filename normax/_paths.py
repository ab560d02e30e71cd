"""Parameter paths as ``/``-joined strings, and walking parameter trees of every kind.

A Flax value wrapper (``nnx.Param``) is one parameter, with the path of the array it holds.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _key_str(key: Any) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return str(key.name)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(getattr(key, "key", key))


def path_to_str(path: tuple[Any, ...]) -> str:
  """Joins a JAX key path with ``/``.

  A trailing ``.value`` attribute, which the ``nnx.Param`` wrappers that
  ``nnx.Optimizer`` hands to ``init`` add, is dropped, so a parameter has the
  same path at ``init`` (wrapped) and at ``update`` (pure arrays). A dict key
  named ``"value"`` is kept: only the wrapper's attribute is dropped.

  Examples:
    >>> import jax, normax
    >>> tree = {"params": {"Dense_0": {"kernel": 0.0}}, "layers": [{"w": 0.0}]}
    >>> [normax.path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    ['layers/0/w', 'params/Dense_0/kernel']
  """
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
    path = path[:-1]
  return "/".join(_key_str(k) for k in path)


def tree_paths(tree: Any, is_leaf=None) -> Any:
  """A pytree of the same structure as ``tree`` holding each leaf's path string.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.tree_paths({"head": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}})
    {'head': {'bias': 'head/bias', 'kernel': 'head/kernel'}}
  """
  return jax.tree_util.tree_map_with_path(lambda p, _: path_to_str(p), tree, is_leaf=is_leaf)


def _is_prefix(prefix: str, path: str) -> bool:
  return prefix == "" or path == prefix or path.startswith(prefix + "/")


def structure_mismatch(prefix_tree: Any, tree: Any, is_leaf=None, limit: int = 10) -> str:
  """Says how ``prefix_tree`` fails to be ``tree`` or a prefix of it, by parameter path.

  Lists the paths of ``tree`` that no entry of ``prefix_tree`` covers (missing)
  and the entries of ``prefix_tree`` that match no path of ``tree`` (extra),
  at most ``limit`` of each; never any leaf's value.
  """
  spec = [path_to_str(k) for k, _ in jax.tree_util.tree_flatten_with_path(prefix_tree, is_leaf)[0]]
  full = [path_to_str(k) for k, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  missing = [p for p in full if not any(_is_prefix(s, p) for s in spec)]
  extra = [s for s in spec if not any(_is_prefix(s, p) for p in full)]

  def show(paths):
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{paths[:limit]}{more}"

  parts = []
  if missing:
    parts.append(f"no entry for parameter path(s) {show(missing)}")
  if extra:
    parts.append(f"entries at {show(extra)} that match no parameter")
  if not parts:
    parts.append("the same paths as the parameters but other container types (a list for a tuple?)")
  return " and ".join(parts)


# -- walking parameter trees ---------------------------------------------------
# Flax NNX hands ``tx.init`` a state whose parameters are ``nnx.Param`` wrappers and
# ``tx.update`` the same state with plain arrays. Without importing flax, a node that wraps a
# single ``.value`` counts as one parameter, so both trees have the same parameters at the same
# paths (``path_to_str`` drops the wrapper's ``.value`` for the same reason).


def children(x: Any) -> list[tuple[Any, Any]]:
  """``x``'s direct children with their keys (``[]`` for a leaf)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)
  if len(flat) == 1 and flat[0][0] == ():
    return []  # x is itself a leaf.
  return [(path[0], child) for path, child in flat]


def is_value_wrapper(x: Any) -> bool:
  """A node wrapping one array leaf under ``.value`` (``nnx.Param``, Linen boxes)."""
  if x is None or isinstance(x, dict | list | tuple | jax.Array | np.ndarray):
    return False
  kids = children(x)
  if len(kids) != 1:
    return False
  key, child = kids[0]
  return (
    isinstance(key, jax.tree_util.GetAttrKey)
    and key.name == "value"
    and not children(child)
    and child is not None
  )


def unwrap(x: Any) -> Any:
  """The array inside a value wrapper (see :func:`is_value_wrapper`); anything else as is."""
  return children(x)[0][1] if is_value_wrapper(x) else x


def leaf_shape(x: Any) -> tuple[int, ...]:
  """The shape of a parameter, wrapped or not (a Python scalar has shape ``()``)."""
  x = unwrap(x)
  shape = getattr(x, "shape", None)
  return tuple(shape) if shape is not None else np.shape(x)


def leaf_dtype(x: Any) -> Any:
  """The dtype of a parameter, wrapped or not."""
  x = unwrap(x)
  dtype = getattr(x, "dtype", None)
  return np.dtype(dtype) if dtype is not None else np.result_type(x)
