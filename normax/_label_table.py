"""The label table: what every parameter gets (label, matrix view, norm, radius, decay)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from normax._base import Norm
from normax._labels import labelled_leaves, text_table
from normax._spec import as_spec, leaf_views


def _norm_str(norm: Norm) -> str:
  changed = []
  for field in dataclasses.fields(norm):
    value = getattr(norm, field.name)
    if field.default is not dataclasses.MISSING and value != field.default:
      changed.append(f"{field.name}={value!r}")
  return f"{norm.name or type(norm).__name__}({', '.join(changed)})" if changed else norm.name


def _scalar_str(x: Any) -> str:
  if x is None:
    return "default"
  if callable(x):
    return "schedule"
  return f"{float(x):g}"


def label_table(params: Any, labels: Any, specs: Mapping[str, Any] | None = None) -> str:
  """The resolved labelling as a text table, one row per parameter.

  Columns: path, shape, dtype, label; the matrix view when any parameter has
  one (``512 × (8·64)``: fan-in × fan-out; ``8 × [512 × 64]``: a stack of 8
  such matrices, e.g. one per head); the operation that decided the role when
  ``labels`` are :class:`normax.Roles`; and with ``specs`` the norm, radius
  and decay (``default``: the optimizer's choice) of each label. A label
  missing from ``specs`` shows ``<missing>`` instead of raising, so the table
  helps debug a configuration. Print it, log it, or assert on it.

  Args:
    params: A params pytree (NNX state, Linen dict, any pytree).
    labels: A label function or a labels pytree, as for :func:`normax.resolve_specs`.
    specs: Optional mapping ``label -> LayerSpec``.

  Returns:
    The table as a string.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"head": {"kernel": jnp.zeros((4, 10))}, "w": jnp.zeros((4, 4))}
    >>> labels = normax.label_by_path([("head/*", "head"), ("*", "hidden")])
    >>> specs = {"head": normax.LayerSpec("sign", radius=10.0),
    ...          "hidden": normax.LayerSpec("spectral", radius=3.0)}
    >>> print(normax.label_table(params, labels, specs))
    path         shape    dtype    label   norm      radius  decay
    head/kernel  (4, 10)  float32  head    sign      10      default
    w            (4, 4)   float32  hidden  spectral  3       default
  """
  leaves = labelled_leaves(params, labels)[0]
  resolved = {} if specs is None else {k: as_spec(k, v) for k, v in specs.items()}
  views = leaf_views(labels, resolved, params)
  roles_fn = getattr(labels, "roles", None)
  roles = None
  if callable(roles_fn):
    roles = jax.tree.leaves(roles_fn(params), is_leaf=lambda r: hasattr(r, "kind"))
  header = ["path", "shape", "dtype", "label"]
  show_views = any(v is not None for v in views)
  if show_views:
    header.append("view")
  if roles is not None:
    header.append("decided by")
  if specs is not None:
    header += ["norm", "radius", "decay"]
  rows = [header]
  for i, (leaf, view) in enumerate(zip(leaves, views, strict=True)):
    row = [leaf.path, str(leaf.shape), str(leaf.dtype), str(leaf.label)]
    if show_views:
      row.append("" if view is None else view.describe(leaf.shape))
    if roles is not None:
      row.append(roles[i].op)
    if specs is not None:
      if leaf.label in resolved:
        spec = resolved[leaf.label]
        row += [_norm_str(spec.norm), _scalar_str(spec.radius), _scalar_str(spec.decay)]
      else:
        row += ["<missing>", "", ""]
    rows.append(row)
  return text_table(rows)
