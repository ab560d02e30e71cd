"""Per-leaf hyperparameters: one value for all leaves, a (prefix) pytree, or a callable.

Every normax transform that takes a per-leaf setting (a norm, a radius, a
decay) resolves it here against the *updates* tree at trace time, so that
errors name the parameter path and shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from normax._base import Norm
from normax._base import acc_dtype as acc_dtype
from normax._checks import NONNEGATIVE, check_value
from normax._paths import path_to_str, structure_mismatch
from normax._registry import get_norm


class _Box:
  """Holds one per-leaf value as an opaque pytree leaf (``None`` included)."""

  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value


def is_scalar_hyperparam(x: Any) -> bool:
  """A float, an int, a scalar array, or a schedule (any callable)."""
  if isinstance(x, bool):
    return False
  if isinstance(x, int | float | np.number):
    return True
  if isinstance(x, jax.Array | np.ndarray):
    return x.ndim == 0
  return callable(x)


def is_norm_spec(x: Any) -> bool:
  return isinstance(x, Norm | str)


def leaf_paths(tree: Any) -> list[str]:
  """Path strings of ``tree``'s leaves, in ``jax.tree.leaves`` order."""
  return [path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def broadcast_spec(
  spec: Any, tree: Any, *, is_spec: Callable[[Any], bool], what: str, allow_callable: bool
) -> list[Any]:
  """One spec value per leaf of ``tree`` (``jax.tree.leaves`` order).

  ``spec`` is a single value (``is_spec``), a pytree whose leaves are values
  or ``None`` and which is ``tree`` or a prefix of it, or (if
  ``allow_callable``) a callable ``tree -> such a pytree``.
  """
  if is_spec(spec):
    return [spec] * len(jax.tree.leaves(tree))
  if allow_callable and callable(spec):
    spec = spec(tree)
    if is_spec(spec):
      return [spec] * len(jax.tree.leaves(tree))
  is_leaf = lambda x: x is None or is_spec(x)
  try:
    boxed = jax.tree.map(
      lambda s, sub: jax.tree.map(lambda _: _Box(s), sub), spec, tree, is_leaf=is_leaf
    )
  except (ValueError, TypeError):
    raise ValueError(
      f"The {what} tree does not match the parameters: it has"
      f" {structure_mismatch(spec, tree, is_leaf)}. It must be a single value, or a"
      f" pytree with the parameters' structure (or a prefix of it) whose leaves are"
      f" {what} values or None."
    ) from None
  return [b.value for b in jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, _Box))]


def resolve_norms(norms: Any, tree: Any, views: list[Any] | None = None) -> list[Norm | None]:
  """One ``Norm`` (or ``None``: pass through) per leaf of ``tree``, checked against the leaf.

  With ``views`` (one :class:`normax.MatrixView` or ``None`` per leaf) a leaf with a view
  is checked in its view's matrix layout, with the norm :meth:`normax.Norm.for_view`
  gives for it.
  """
  specs = broadcast_spec(norms, tree, is_spec=is_norm_spec, what="norm", allow_callable=True)
  views = views or [None] * len(specs)
  out = []
  leaves = jax.tree.leaves(tree)
  for spec, view, path, leaf in zip(specs, views, leaf_paths(tree), leaves, strict=True):
    if spec is None:
      out.append(None)
      continue
    if not is_norm_spec(spec):
      raise TypeError(
        f"Expected a normax.Norm, a norm name or None for the parameter at"
        f" {path!r}; got {type(spec).__name__}: {spec!r}."
      )
    norm = get_norm(spec)
    shape = jnp.shape(leaf)
    if view is not None:
      norm = norm.for_view(view, path)
      shape = view.matrix_shape(shape)
    norm.check(shape, jnp.result_type(leaf), path)
    out.append(norm)
  return out


def resolve_scalars(value: Any, tree: Any, count: jax.Array, what: str) -> list[Any]:
  """One scalar per leaf of ``tree``, schedules evaluated at ``count``.

  ``None`` leaves (in a tree) come back as ``None``.
  """
  specs = broadcast_spec(value, tree, is_spec=is_scalar_hyperparam, what=what, allow_callable=False)
  return [evaluate(s, count) for s in specs]


def has_schedule(value: Any) -> bool:
  """Whether a hyperparameter (a number, schedule, ``None`` or a pytree of them) holds a
  schedule: only then does a transform need a step count in its state."""
  return any(callable(x) for x in jax.tree.leaves(value, is_leaf=is_scalar_hyperparam))


def evaluate(value: Any, count: jax.Array) -> Any:
  """A schedule's value at ``count``; a number or ``None`` as is."""
  if value is None:
    return None
  return value(count) if callable(value) else value


def check_nonnegative(value: Any, what: str) -> None:
  """Raises a ``ValueError`` naming ``what`` if a number in ``value`` is NaN, inf or < 0.

  :func:`normax._checks.check_value` with ``[0, ∞)``: ``value`` is a number, a schedule,
  ``None`` or a pytree of them; schedules and traced values are not checked here.
  """
  check_value(value, what, NONNEGATIVE)


def check_updates(updates: Any, params: Any, owner: str) -> None:
  """Raises an error naming paths if ``updates`` cannot be the gradients of ``params``.

  ``float0`` leaves (what ``jax.grad(..., allow_int=True)`` gives integer parameters) are a
  ``TypeError``; with ``params``, paths missing on either side or a leaf whose shape differs
  from its parameter's are a ``ValueError``. Never shows array values.
  """
  flat = jax.tree_util.tree_flatten_with_path(updates)[0]
  float0 = [path_to_str(k) for k, u in flat if jnp.result_type(u) == jax.dtypes.float0]
  if float0:
    raise TypeError(
      f"{owner} got float0 gradients at {float0}: jax.grad(..., allow_int=True) gives them"
      " for integer parameters, which no optimizer can step. Leave integer leaves out, e.g."
      " optax.partition({'float': tx, 'int': optax.set_to_zero()}, label_fn) with label_fn"
      " giving 'int' to integer leaves."
    )
  if params is None:
    return
  shapes = {path_to_str(k): jnp.shape(u) for k, u in flat}
  wanted = {
    path_to_str(k): jnp.shape(p) for k, p in jax.tree_util.tree_flatten_with_path(params)[0]
  }
  if shapes.keys() != wanted.keys():
    raise ValueError(
      f"{owner}: the gradients do not have the parameters' structure: they have"
      f" {structure_mismatch(updates, params)}. Pass the gradients of exactly the tree given"
      " to tx.init (same containers, same keys)."
    )
  wrong = [f"{k} {shapes[k]} (parameter {wanted[k]})" for k in shapes if shapes[k] != wanted[k]]
  if wrong:
    raise ValueError(
      f"{owner}: gradients whose shape differs from their parameter's: {', '.join(wrong)}."
    )


def with_checked_updates(
  tx: optax.GradientTransformation, owner: str
) -> optax.GradientTransformationExtraArgs:
  """``tx`` whose ``update`` first runs :func:`check_updates` (same state, same result)."""
  tx = optax.with_extra_args_support(tx)

  def update_fn(updates, state, params=None, **extra_args):
    check_updates(updates, params, owner)
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


def cast_scalar(x: Any, dtype) -> jax.Array:
  """``x`` as a scalar array of ``dtype`` (strict-promotion safe)."""
  return jnp.asarray(x).astype(dtype)
