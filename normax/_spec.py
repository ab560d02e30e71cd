"""``LayerSpec``: what one label means -- its norm, radius, decay and view; labels to specs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import optax

from normax._base import Norm
from normax._labels import check_known, labelled_leaves, views_of
from normax._leafwise import check_nonnegative
from normax._matrix_view import MatrixView
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
