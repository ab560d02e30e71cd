"""``LayerSpec``: what one label means -- its norm, radius, decay and view; labels to specs."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import numpy as np
import optax

from normax._base import Norm
from normax._checks import NONNEGATIVE, check_args
from normax._labels import Labelled, labelled_leaves, views_of
from normax._leafwise import check_nonnegative
from normax._matrix_view import MatrixView
from normax._paths import leaf_dtype
from normax._registry import get_norm


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """The norm, radius ρ, constrained decay μ and matrix view of one parameter role.

  One mapping ``{label: LayerSpec}`` configures every normax piece: the LMO
  uses ``norm``, the step is scaled by ``radius``, and ``decay`` adds ``μ·x``
  before the learning rate, so the update is ``x ← (1-γμ)x - γρ·dualize(d)``.
  ``decay=1`` is Scion's constrained mode (``‖x‖ ≤ ρ`` in ``norm``), ``0``
  unconstrained, and ``None`` (the default) leaves the choice to the
  optimizer (``normax.scion(..., constrained=True)`` gives ``1``).

  Args:
    norm: A :class:`normax.Norm` or a registered name (``"spectral"``).
    radius: ρ, a float or an ``optax.Schedule``.
    decay: μ, a float, an ``optax.Schedule``, or ``None`` for the optimizer's
      default.
    view: The :class:`normax.MatrixView` the norm reads every parameter of
      this label in (e.g. ``MatrixView(fan_in=-3, fan_out=(-2, -1))`` for
      attention kernels ``(..., d, heads, head_dim)``); ``None``: the last
      two axes, leading axes a stack. A view the label function gives a
      parameter (:class:`normax.Roles`, a :class:`normax.Rule`'s ``view``)
      takes precedence.

  Examples:
    >>> import normax
    >>> normax.LayerSpec("spectral", radius=3.0).norm.name
    'spectral'
  """

  norm: Norm | str
  radius: float | optax.Schedule = 1.0
  decay: float | optax.Schedule | None = None
  view: MatrixView | None = None

  def __post_init__(self):
    check_args(
      "normax.LayerSpec", radius=(self.radius, NONNEGATIVE), decay=(self.decay, NONNEGATIVE)
    )
    object.__setattr__(self, "norm", get_norm(self.norm))
    if self.view is not None and not isinstance(self.view, MatrixView):
      raise TypeError(f"LayerSpec view must be a normax.MatrixView or None, got {self.view!r}.")


def as_spec(label: Any, spec: Any) -> LayerSpec:
  """``spec`` as a :class:`LayerSpec` (a bare norm or name is ``LayerSpec(norm)``)."""
  if isinstance(spec, LayerSpec):
    return spec
  if isinstance(spec, Norm | str):
    return LayerSpec(spec)
  raise TypeError(
    f"specs[{label!r}] is {spec!r}; expected a normax.LayerSpec(norm, radius, decay), a"
    " normax.Norm or a norm name."
  )


def check_spec_values(specs: Mapping[Any, LayerSpec]) -> None:
  """Radius and decay of every spec: finite and >= 0 (schedules are checked when called)."""
  for label, spec in specs.items():
    check_nonnegative(spec.radius, f"specs[{label!r}].radius")
    check_nonnegative(spec.decay, f"specs[{label!r}].decay")


def leaf_views(labels: Any, specs: Mapping[Any, LayerSpec], tree: Any) -> list:
  """The view of each leaf of ``tree`` (``jax.tree.leaves`` order): the label function's, else
  its label's ``LayerSpec.view``, else ``None``."""
  leaves = labelled_leaves(tree, labels)[0]
  given = views_of(labels, tree)
  flat = [None] * len(leaves)
  if given is not None:
    flat = jax.tree.leaves(given, is_leaf=lambda v: v is None or isinstance(v, MatrixView))
  out = []
  for leaf, view in zip(leaves, flat, strict=True):
    spec = specs.get(leaf.label)
    spec_view = spec.view if isinstance(spec, LayerSpec) else None
    out.append(view if view is not None else spec_view)
  return out


def spec_views(labels: Any, spec: LayerSpec) -> Any:
  """The views of one label's parameters: what the label function states (by path), else the
  spec's ``view`` (``None``: every leaf in its own layout). For ``scale_by_lmo(views=...)``."""
  if getattr(labels, "views", None) is None:
    return spec.view

  def fn(tree):
    given = views_of(labels, tree)
    if spec.view is None:
      return given
    fill = lambda v: spec.view if v is None else v  # noqa: E731
    return jax.tree.map(fill, given, is_leaf=lambda v: v is None or isinstance(v, MatrixView))

  return fn


def resolve_specs(params: Any, labels: Any, specs: Mapping[str, Any]) -> Any:
  """Each parameter's :class:`normax.LayerSpec` (with its view), checked against its shape.

  Labels every parameter, looks each label up in ``specs``, attaches the
  parameter's :class:`normax.MatrixView` (the label function's, else the
  spec's) and checks that the norm accepts the parameter's shape and dtype in
  that view. Optimizers do not call it (:func:`normax.scion` rejects unknown
  labels when ``optax.partition`` labels the tree, and each norm checks its
  leaf when the update is traced); call it before training to fail early,
  with errors that name paths, and to see what a configuration does (or use
  :func:`normax.label_table`).

  Args:
    params: A params pytree (or updates, or ``jax.ShapeDtypeStruct``\\ s).
    labels: A label function ``params -> labels`` (e.g. from
      :func:`normax.label_by_path` or :func:`normax.infer_roles`) or a pytree
      of labels with the params' structure or a prefix of it.
    specs: Mapping ``label -> LayerSpec``; a bare ``normax.Norm`` or norm
      name stands for ``LayerSpec(norm)``.

  Returns:
    A pytree with the params' structure whose leaves are ``LayerSpec``\\ s.

  Raises:
    ValueError: if a label has no entry in ``specs`` (every such label is
      named, with the paths that carry it), if an entry of ``specs`` looks
      like a misspelt label, if the labels do not fit the params, or if a
      norm or view rejects a parameter's shape.
    TypeError: if a spec is not a ``LayerSpec``/``Norm``/name, or a norm
      rejects a parameter's dtype.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"w": jnp.zeros((4, 8)), "b": jnp.zeros(8)}
    >>> specs = {"hidden": normax.LayerSpec("spectral", radius=3.0), "bias": "bias_rms"}
    >>> out = normax.resolve_specs(params, {"w": "hidden", "b": "bias"}, specs)
    >>> out["w"].radius, out["b"].norm
    (3.0, BiasRMS())
    >>> normax.resolve_specs(params, {"w": "hiden", "b": "bias"}, specs)
    Traceback (most recent call last):
    ...
    ValueError: Label 'hiden' has no entry in specs (known labels: 'bias', 'hidden'). ...
  """
  if not isinstance(specs, Mapping):
    raise TypeError(f"specs must be a mapping label -> normax.LayerSpec, got {specs!r}.")
  leaves, treedef, flat_labels, subtrees = labelled_leaves(params, labels)
  check_known(leaves, specs, "specs")
  resolved = {label: as_spec(label, spec) for label, spec in specs.items()}
  check_spec_values(resolved)
  views = leaf_views(labels, resolved, params)
  per_leaf = []
  for leaf, view in zip(leaves, views, strict=True):
    spec = resolved[leaf.label]
    if view is None:
      spec.norm.check(leaf.shape, leaf.dtype, leaf.path)
    else:
      view.check(leaf.shape, leaf.path)
      spec.norm.for_view(view, leaf.path).check(
        view.matrix_shape(leaf.shape), leaf.dtype, leaf.path
      )
      spec = dataclasses.replace(spec, view=view)
    per_leaf.append(spec)
  it = iter(per_leaf)
  return treedef.unflatten(jax.tree.map(lambda _: next(it), sub) for sub in subtrees)


# -- checking labels against specs ----------------------------------------------


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
