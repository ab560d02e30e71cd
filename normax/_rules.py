"""Label rules: a path pattern (component-wise globs or a regex), shape conditions, a label and
an optional matrix view. :func:`normax.label_by_path` turns an ordered list of them into a label
function."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from normax._checks import COUNT, check_args
from normax._matrix_view import MatrixView

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
    check_args("normax.Rule", ndim=(self.ndim, COUNT), min_ndim=(self.min_ndim, COUNT))
    for name in ("ndim", "min_ndim"):  # A NumPy or JAX integer scalar as a Python int.
      value = getattr(self, name)
      if getattr(value, "ndim", None) == 0 and not isinstance(value, int):
        object.__setattr__(self, name, int(value))
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


def as_rules(rules: Any) -> tuple[Rule, ...]:
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
