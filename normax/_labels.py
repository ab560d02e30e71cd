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
import difflib
import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from normax._matrix_view import MatrixView
from normax._paths import (
  is_value_wrapper,
  leaf_dtype,
  leaf_shape,
  path_to_str,
  structure_mismatch,
)

Shape = tuple[int, ...]


def glob_match(pattern: str, path: str) -> bool:
  """Whether a glob matches a ``/``-joined path, component by component.

  ``*`` and ``?`` stay inside one path component, ``**`` spans any number of
  whole components, a final ``/*`` matches everything below (one or more
  components), and the pattern matches the path's *last* components unless
  it starts with ``/`` (then the whole path): ``"head/*"`` matches
  ``"lm/head/kernel"`` but not ``"multihead/kernel"``.
  """
  anchored = pattern.startswith("/")
  pat = pattern.strip("/").split("/") if pattern.strip("/") else []
  parts = path.split("/") if path else []
  if len(pat) > 1 and pat[-1] == "*":
    pat = [*pat[:-1], "?*", "**"]  # One component at least, then any number.
  if not anchored:
    pat = ["**", *pat]
  return _match(tuple(pat), tuple(parts))


def _match(pat: tuple[str, ...], parts: tuple[str, ...]) -> bool:
  if not pat:
    return not parts
  if pat[0] == "**":
    return any(_match(pat[1:], parts[i:]) for i in range(len(parts) + 1))
  return bool(parts) and fnmatch.fnmatchcase(parts[0], pat[0]) and _match(pat[1:], parts[1:])


@dataclasses.dataclass(frozen=True)
class Rule:
  """One label rule: a path pattern, optional shape conditions, a label and a matrix view.

  A rule matches a parameter when ``pattern`` matches its ``/``-joined path
  (``"blocks/0/attn/query/kernel"``, ``"params/Dense_0/kernel"``) and every
  given condition holds.

  Args:
    pattern: A glob matched on whole path components: ``*`` and ``?`` stay
      inside a component, ``**`` spans any number of them, a final ``/*``
      matches everything below, and the pattern matches the path's last
      components (a leading ``/`` anchors it at the root). So ``"kernel"``
      or ``"*kernel"`` matches every kernel, ``"head/*"`` everything in a
      module called ``head`` but not ``multihead``, ``"logits/*"`` not
      ``pre_logits``. Or a compiled ``re.Pattern``, which must match the
      whole path (``re.fullmatch``).
    label: The label given to matching parameters (``None`` with ``error``).
    ndim: Accepted rank(s): an int or a collection such as ``(3, 4, 5)`` or
      ``range(2, 8)``. ``None`` accepts any rank.
    min_ndim: Smallest accepted rank (``min_ndim=2``: every matrix, scanned
      stacks included). ``None`` sets no lower bound; with ``ndim`` both hold.
    where: An extra predicate on the shape, ``shape -> bool``.
    error: Marks parameters this rule matches as ambiguous: instead of
      guessing a label, the label function raises one ``ValueError`` listing
      every such path and shape, followed by this text (which should say how
      to disambiguate). Rules placed before it still label those paths.
    view: The :class:`normax.MatrixView` of matching parameters (which axes
      are the fan-in, the fan-out and a stack), e.g.
      ``normax.MatrixView(fan_in=-3, fan_out=(-2, -1))`` for attention
      kernels ``(..., d, heads, head_dim)``; ``None``: the last two axes.

  Examples:
    >>> import re, jax.numpy as jnp, normax
    >>> rule = normax.Rule("conv*/kernel", "conv", ndim=(3, 4, 5))
    >>> rule.matches("blocks/conv1/kernel", (3, 3, 8, 16)), rule.matches("dense/kernel", (8, 16))
    (True, False)
    >>> normax.Rule("head/*", "head").matches("multihead/kernel", (4, 4))
    False
    >>> normax.Rule(re.compile(r"layers/\\d+/.*"), "hidden").matches("layers/12/w", (4, 4))
    True
    >>> rule = normax.Rule("*", "hidden", min_ndim=2)
    >>> rule.matches("w", (3, 8, 8)), rule.matches("b", (8,)), rule.describe()
    (True, False, "'*' [ndim>=2] -> 'hidden'")
    >>> fn = normax.label_by_path([normax.Rule("*", None, ndim=3, error="Say which.")])
    >>> try:
    ...   fn({"w": jnp.zeros((3, 4, 4))})
    ... except ValueError as e:
    ...   print(*str(e).splitlines()[:3], sep="\\n")
    1 parameter(s) are ambiguous under these rules:
      w  (3, 4, 4)  float32
    Say which.
  """

  pattern: str | re.Pattern
  label: str | None
  ndim: int | Collection[int] | None = None
  where: Callable[[Shape], bool] | None = None
  error: str | None = None
  min_ndim: int | None = None
  view: MatrixView | None = None

  def __post_init__(self):
    if not isinstance(self.pattern, str | re.Pattern):
      raise TypeError(
        f"A rule pattern must be a glob string or a compiled re.Pattern, got"
        f" {type(self.pattern).__name__}: {self.pattern!r}."
      )
    if isinstance(self.ndim, range):
      pass  # Hashable and cheap to test; shown as a range in messages.
    elif isinstance(self.ndim, Collection) and not isinstance(self.ndim, str):
      object.__setattr__(self, "ndim", tuple(self.ndim))
    elif self.ndim is not None and not isinstance(self.ndim, int):
      raise TypeError(f"Rule ndim must be an int or a collection of ints, got {self.ndim!r}.")
    if self.min_ndim is not None and not (isinstance(self.min_ndim, int) and self.min_ndim >= 0):
      raise TypeError(f"Rule min_ndim must be an int >= 0, got {self.min_ndim!r}.")
    if (self.label is None) == (self.error is None):
      raise TypeError(
        f"A rule needs exactly one of a label or an error, got label={self.label!r} and"
        f" error={self.error!r}."
      )
    if self.view is not None and not isinstance(self.view, MatrixView):
      raise TypeError(f"Rule view must be a normax.MatrixView or None, got {self.view!r}.")

  def matches(self, path: str, shape: Shape) -> bool:
    """Whether this rule applies to a parameter at ``path`` of ``shape``."""
    if isinstance(self.pattern, str):
      if not glob_match(self.pattern, path):
        return False
    elif self.pattern.fullmatch(path) is None:
      return False
    if self.ndim is not None:
      ranks = (self.ndim,) if isinstance(self.ndim, int) else self.ndim
      if len(shape) not in ranks:
        return False
    if self.min_ndim is not None and len(shape) < self.min_ndim:
      return False
    return self.where is None or bool(self.where(shape))

  def describe(self) -> str:
    pattern = self.pattern if isinstance(self.pattern, str) else f"re:{self.pattern.pattern}"
    conditions = []
    if isinstance(self.ndim, range) and self.ndim.step == 1:
      top = "" if self.ndim.stop >= 64 else f"<{self.ndim.stop}"
      conditions.append(f"ndim>={self.ndim.start}{top}".replace(">=0", ""))
    elif self.ndim is not None:
      conditions.append(f"ndim={self.ndim}")
    if self.min_ndim:
      conditions.append(f"ndim>={self.min_ndim}")
    if self.where is not None:
      conditions.append("where=...")
    suffix = f" [{', '.join(conditions)}]" if conditions else ""
    view = "" if self.view is None else " (with a view)"
    return f"{pattern!r}{suffix} -> {'error' if self.error else repr(self.label)}{view}"


def _as_rules(rules: Any) -> tuple[Rule, ...]:
  if isinstance(rules, Mapping):
    rules = rules.items()
  if isinstance(rules, str | Rule):
    raise TypeError(
      f"rules must be a sequence of rules, got {rules!r}; wrap it: rules=[{rules!r}, ...]."
    )
  out = []
  for rule in rules:
    if isinstance(rule, Rule):
      out.append(rule)
    elif isinstance(rule, tuple) and len(rule) == 2:
      out.append(Rule(*rule))
    else:
      raise TypeError(f"Each rule must be a normax.Rule or a (pattern, label) pair, got {rule!r}.")
  return tuple(out)


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
  return LabelFn(_as_rules(rules), default, tuple(required))


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


def check_labels_arg(labels: Any, what: str, known: Collection[Any]) -> None:
  """Rejects one string for every parameter where several labels are ``known``.

  ``optax.inject_hyperparams`` calls every callable argument with the step count; a plain
  Python label function then comes back as one label, which would route every parameter to it.
  (One label for everything is fine where it is the only one.)
  """
  if isinstance(labels, str) and len(known) > 1:
    raise TypeError(
      f"{what}: labels is the single label {labels!r}, which would give every parameter that"
      f" label although {len(known)} labels are configured. Under optax.inject_hyperparams a"
      " plain label function is called with the step"
      " count (it is taken for a schedule) and returns one label: pass"
      " optax.inject_hyperparams(..., static_args=('labels',)), or build it with"
      " normax.label_by_path / normax.infer_roles, which inject_hyperparams leaves alone."
    )


def _abstract(tree: Any) -> Any:
  """``tree`` with every array leaf replaced by a ``jax.ShapeDtypeStruct`` (wrappers kept)."""

  def one(x):
    if x is None:
      return x
    return jax.ShapeDtypeStruct(np.shape(x), leaf_dtype(x))

  return jax.tree.map(one, tree)


def _unknown_labels(leaves: list[Labelled], known: Mapping[Any, Any], what: str, fix) -> None:
  unknown: dict[Any, list[str]] = {}
  for leaf in leaves:
    if leaf.label not in known:
      unknown.setdefault(leaf.label, []).append(f"{leaf.path} {leaf.shape}")
  if not unknown:
    return
  names = ", ".join(repr(k) for k in sorted(known, key=str)) or "none"
  lines = "\n".join(f"  {lab!r}: {', '.join(paths)}" for lab, paths in unknown.items())
  first = next(iter(unknown))
  many = len(unknown) > 1
  fix = fix or (
    f"Add one, e.g. {what}[{first!r}] = normax.LayerSpec('spectral', radius=1.0), or fix"
    " the label rules."
  )
  raise ValueError(
    f"Label{'s' if many else ''} {', '.join(repr(k) for k in unknown)}"
    f" {'have' if many else 'has'} no entry in {what} (known labels: {names})."
    f" Parameters carrying {'them' if many else 'it'}:\n{lines}\n{fix}"
  )


def _misspelt_keys(leaves: list[Labelled], known: Mapping[Any, Any], what: str) -> None:
  """An entry no parameter uses whose name is close to a used label is a typo, not a spare."""
  used = sorted({str(leaf.label) for leaf in leaves})
  for key in known:
    if key in used or not isinstance(key, str):
      continue
    close = difflib.get_close_matches(key, used, n=1, cutoff=0.75)
    if close:
      raise ValueError(
        f"{what} has an entry {key!r} that no parameter carries, close to the label"
        f" {close[0]!r} that parameters do carry: a typo? Rename it to {close[0]!r} (or remove"
        " it); as it stands it changes nothing."
      )


def check_known(
  leaves: list[Labelled], known: Mapping[Any, Any], what: str, fix: str | None = None
) -> None:
  """Raises one error naming every label not in ``known`` (with its parameters), or an entry
  of ``known`` that no parameter uses and that looks like a misspelt label."""
  _unknown_labels(leaves, known, what, fix)
  _misspelt_keys(leaves, known, what)


def checked_labels(
  labels: Any, known: Mapping[Any, Any], what: str, fix: str | None = None
) -> Callable[[Any], Any]:
  """A label function for ``optax.partition`` that rejects labels not in ``known``.

  ``optax.partition`` calls it on params at ``init`` and on updates at
  ``update``; either way the labels are computed from the tree's shapes
  alone (a label function that reads values fails here, instead of routing by
  the values of the gradients) and an unknown label raises one error naming
  every such label and the parameter paths that carry it.
  """

  def fn(tree):
    if callable(labels):
      try:
        lab = labels(_abstract(tree))
      except (TypeError, jax.errors.ConcretizationTypeError, AttributeError) as e:
        raise ValueError(
          f"{what}: the label function failed on the parameters' shapes ({type(e).__name__}:"
          f" {e}). Labels must depend on paths and shapes only, never on values (optax calls"
          " them on the updates): build them with normax.label_by_path or normax.infer_roles."
        ) from e
    else:
      lab = labels
    check_known(labelled_leaves(tree, lab)[0], known, what, fix)
    return lab

  return fn
