"""Label functions: ordered path rules that give every parameter a role label (and a view).

A label names a parameter's role (``"embed"``, ``"hidden"``, ``"head"``,
``"bias"``); one mapping ``{label: LayerSpec}`` then says what each role
means. Labels depend only on paths and shapes, never on values, because
``optax.partition`` calls the label function on the updates, not the params.
A label function may also say each leaf's :class:`normax.MatrixView`
(``labels.views(tree)``): :class:`normax.Rule` can state one, and
:class:`normax.Roles` read them from the model.

Flax NNX hands ``tx.init`` a state whose parameters are ``nnx.Param``
wrappers and ``tx.update`` the same state with plain arrays. Without
importing flax, a label function here treats any pytree node that wraps a
single ``.value`` as one parameter and gives it one label, so both trees get
the same labels at the same paths.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from normax._paths import (
  is_value_wrapper,
  leaf_dtype,
  leaf_shape,
  path_to_str,
  structure_mismatch,
)
from normax._rules import Rule, as_rules

Shape = tuple[int, ...]


def _glob_for(path: str) -> str:
  return path.rsplit("/", 1)[-1]


def text_table(rows: Iterable[Iterable[str]], indent: str = "") -> str:
  """Rows of strings as left-aligned columns."""
  rows = [list(r) for r in rows]
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
  return "\n".join(indent + line for line in lines)


def is_step_count(x: Any) -> bool:
  """A scalar integer: what ``optax.inject_hyperparams`` calls a "schedule" with."""
  if isinstance(x, bool):
    return False
  if isinstance(x, int | np.integer):
    return True
  dtype = getattr(x, "dtype", None)
  return np.ndim(x) == 0 and dtype is not None and np.issubdtype(dtype, np.integer)


# -- the label function --------------------------------------------------------


# A static pytree (no leaves, itself the aux data), so that a label function may sit
# in an optimizer state: see LabelFn.__call__ on optax.inject_hyperparams.
@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class LabelFn:
  """A label function built by :func:`label_by_path`; call it on a params pytree.

  It returns a pytree of label strings with the structure of ``params``
  (one label per ``nnx.Param``, wrapped or not), so it can be passed wherever
  optax takes labels (``optax.partition``, :func:`normax.scion`);
  :meth:`views` gives the :class:`normax.MatrixView` its rules state.

  ``optax.inject_hyperparams`` takes every callable argument for a schedule
  and calls it with the step count; called with a scalar integer, a
  ``LabelFn`` returns itself (and it is a leafless pytree, so it can sit in
  the optimizer state), so ``optax.inject_hyperparams(normax.scion)(lr,
  specs, labels)`` works without ``static_args``. A plain Python label
  function cannot do this: pass ``static_args=("labels",)`` for one, or build
  it with :func:`normax.label_by_path`.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> fn = normax.label_by_path([("head/kernel", "head"), ("*", "hidden")])
    >>> fn({"head": {"kernel": jnp.zeros((4, 2))}, "body": {"kernel": jnp.zeros((4, 4))}})
    {'body': {'kernel': 'hidden'}, 'head': {'kernel': 'head'}}
    >>> fn.label_of("head/kernel", (4, 2))
    'head'
  """

  rules: tuple[Rule, ...]
  default: str | None = None
  required: tuple[str, ...] = ()

  def _rule_for(self, path: str, shape: Shape) -> Rule | None:
    return next((rule for rule in self.rules if rule.matches(path, shape)), None)

  def label_of(self, path: str, shape: Shape) -> str | None:
    """The label of the first rule matching ``(path, shape)``, else ``default``.

    ``None`` where an ``error`` rule matches first (an ambiguous parameter).
    """
    rule = self._rule_for(path, shape)
    return self.default if rule is None else rule.label

  def views(self, tree: Any) -> Any:
    """The :class:`normax.MatrixView` of each leaf (its rule's ``view``; ``None``: none)."""

    def view(keys, x):
      rule = self._rule_for(path_to_str(keys), leaf_shape(x))
      return None if rule is None else rule.view

    return jax.tree_util.tree_map_with_path(view, tree, is_leaf=is_value_wrapper)

  def __call__(self, params: Any) -> Any:
    if is_step_count(params):  # optax.inject_hyperparams evaluating a "schedule".
      return self
    unmatched: list[tuple[str, Shape, Any]] = []
    ambiguous: list[tuple[str, Shape, Any, Rule]] = []
    used: set[str] = set()

    def label(keys, x):
      path, shape = path_to_str(keys), leaf_shape(x)
      rule = self._rule_for(path, shape)
      if rule is not None and rule.error is not None:
        ambiguous.append((path, shape, leaf_dtype(x), rule))
        return None
      lab = self.default if rule is None else rule.label
      if lab is None:
        unmatched.append((path, shape, leaf_dtype(x)))
      used.add(lab)
      return lab

    labels = jax.tree_util.tree_map_with_path(label, params, is_leaf=is_value_wrapper)
    if ambiguous:
      raise ValueError(self._ambiguous_message(ambiguous))
    if unmatched:
      raise ValueError(self._unmatched_message(unmatched))
    missing = [lab for lab in self.required if lab not in used]
    if missing:
      raise ValueError(self._missing_message(missing, params))
    return labels

  def _rules_text(self) -> str:
    return "\n".join(f"  {i}. {r.describe()}" for i, r in enumerate(self.rules, 1)) or "  (none)"

  def _unmatched_message(self, unmatched) -> str:
    rows = [(p, str(s), str(d)) for p, s, d in unmatched]
    globs = list(dict.fromkeys(_glob_for(p) for p, _, _ in unmatched))
    example = ", ".join(f'("{g}", "<label>")' for g in globs[:4])
    return (
      f"{len(unmatched)} parameter(s) match no label rule and no default was given:\n"
      f"{text_table(rows, '  ')}\n"
      f"Rules, tried in order:\n{self._rules_text()}\n"
      f"Add rules that catch them, e.g. rules=[..., {example}], or pass"
      f' default="<label>" to label everything else.'
    )

  def _ambiguous_message(self, ambiguous) -> str:
    rows = [(p, str(s), str(d)) for p, s, d, _ in ambiguous]
    reasons = "\n".join(dict.fromkeys(rule.error for *_, rule in ambiguous))
    example = ", ".join(f'("{p}", "<label>")' for p, *_ in ambiguous[:4])
    return (
      f"{len(ambiguous)} parameter(s) are ambiguous under these rules:\n"
      f"{text_table(rows, '  ')}\n{reasons}\n"
      f"Rules, tried in order:\n{self._rules_text()}\n"
      f"A rule in front labels them explicitly, e.g. rules=[{example}, ...]."
    )

  def _missing_message(self, missing, params) -> str:
    shapes = jax.tree_util.tree_map_with_path(
      lambda k, x: (path_to_str(k), leaf_shape(x)), params, is_leaf=is_value_wrapper
    )
    rows = [
      (p, str(s), str(self.label_of(p, s)))
      for p, s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple))
    ]
    table = text_table(rows, "  ") if rows else "  (no parameters)"
    return (
      f"No parameter got the label(s) {missing}, which these rules require:\n"
      f"{self._rules_text()}\n"
      f"Parameters and the labels they got:\n{table}\n"
      "Point those rules at the right parameters using the paths above (e.g. a glob"
      " 'params/Dense_1/*' for an unnamed Linen layer), or rename the module to match."
    )


def label_by_path(
  rules: Iterable[Rule | tuple[str | re.Pattern, str]] | Mapping[str | re.Pattern, str],
  *,
  default: str | None = None,
  required: Iterable[str] = (),
) -> LabelFn:
  """A label function from ordered path rules: the first matching rule wins.

  The returned callable maps a params pytree to a pytree of labels (strings)
  with the same structure, ready for ``normax.scion(lr, specs, labels)`` or
  ``optax.partition``. It works on any pytree: plain dicts, Linen
  ``{"params": ...}`` dicts, Flax NNX states both with ``nnx.Param``
  wrappers (as ``nnx.Optimizer`` passes to ``init``; each wrapper gets one
  label) and as pure arrays (as passed to ``update``), and scanned layer
  stacks (state their view with ``Rule(..., view=normax.MatrixView(-2, -1))``).

  Paths are ``/``-joined keys: ``"blocks/0/mlp/kernel"`` (NNX),
  ``"params/Dense_0/kernel"`` (Linen). Globs match whole path components
  (see :class:`normax.Rule`). Labels depend only on paths and shapes, never
  on values. To read roles from the model instead of its names, use
  :func:`normax.infer_roles`.

  Args:
    rules: :class:`normax.Rule` objects or ``(pattern, label)`` pairs, tried
      in order; a mapping ``{pattern: label}`` is read in insertion order.
    default: Label for parameters no rule matches. ``None`` (the default)
      makes them an error that lists every unmatched path and shape.
    required: Labels that at least one parameter must get; an error
      otherwise (e.g. a head rule that matches nothing because the output
      layer has an unexpected name).

  Returns:
    A :class:`LabelFn`: ``params -> pytree of labels``.

  Raises:
    ValueError: when called, if a parameter matches no rule (all of them
      are listed, with a rule that would catch each) or a required label is
      unused.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"embed": {"embedding": jnp.zeros((10, 4))},
    ...           "mlp": {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros(4)}}
    >>> labels = normax.label_by_path([
    ...     ("embedding", "embed"),
    ...     normax.Rule("*", "bias", ndim=(0, 1)),
    ...     ("kernel", "hidden"),
    ... ])
    >>> labels(params)
    {'embed': {'embedding': 'embed'}, 'mlp': {'bias': 'bias', 'kernel': 'hidden'}}
  """
  return LabelFn(as_rules(rules), default, tuple(required))


# -- labels of a tree ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Labelled:
  """One array leaf with its path, shape, dtype and label."""

  path: str
  shape: Shape
  dtype: Any
  label: Any


def labelled_leaves(params: Any, labels: Any) -> tuple[list[Labelled], Any, list[Any], list[Any]]:
  """Every array leaf of ``params`` with its path, shape, dtype and label.

  Also returns the labels' treedef, the labels and the params subtree under
  each label, to rebuild a tree of the params' structure.
  """
  tree = labels(params) if callable(labels) else labels
  flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
  try:
    subtrees = treedef.flatten_up_to(params)
  except (ValueError, TypeError):
    raise ValueError(
      f"The labels do not fit the params: they have {structure_mismatch(tree, params)}."
      " They must have the structure of the params (or a prefix of it), one label per"
      " parameter (or per subtree)."
    ) from None
  out = []
  for (keys, label), sub in zip(flat, subtrees, strict=True):
    for subkeys, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
      out.append(Labelled(path_to_str(keys + subkeys), leaf_shape(leaf), leaf_dtype(leaf), label))
  return out, treedef, [label for _, label in flat], subtrees


def broadcast_labels(params: Any, labels: Any) -> Any:
  """The label of every leaf, as a pytree of the params' structure.

  ``labels`` is a label function or a pytree of labels with the params'
  structure or a prefix of it (a label at an inner node covers its subtree).
  """
  _, treedef, flat_labels, subtrees = labelled_leaves(params, labels)
  pairs = zip(flat_labels, subtrees, strict=True)
  return treedef.unflatten(jax.tree.map(lambda _, lab=lab: lab, sub) for lab, sub in pairs)


def views_of(labels: Any, tree: Any) -> Any:
  """The :class:`normax.MatrixView` of each leaf of ``tree`` that ``labels`` states.

  A label function with a ``views(tree)`` method (:class:`normax.LabelFn`,
  :class:`normax.Roles`) says them; a plain function or a pytree of labels
  states none (``None``: every leaf in its own layout).
  """
  views = getattr(labels, "views", None)
  return views(tree) if callable(views) else None
