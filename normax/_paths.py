"""Parameter paths as ``/``-joined strings, the same for every kind of pytree."""

from __future__ import annotations

from typing import Any

import jax


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
