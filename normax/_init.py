"""Boundary initialization: every parameter on the sphere of its norm, scaled by its radius."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from normax._base import acc_dtype
from normax._labels import broadcast_labels
from normax._paths import tree_paths
from normax._spec import LayerSpec, resolve_specs


def _radius_at_start(radius, label: str) -> float:
  value = radius(jnp.zeros([], jnp.int32)) if callable(radius) else radius
  try:
    return float(value)
  except TypeError:
    raise TypeError(f"specs[{label!r}].radius gave {value!r}; expected a number.") from None


def init_params(
  key: jax.Array,
  params: optax.Params,
  labels: Any,
  specs: Mapping[str, LayerSpec],
  *,
  keep: Iterable[str] = (),
) -> optax.Params:
  """Draws every parameter on the sphere of its label's norm, times its radius.

  For a leaf ``w`` labelled ``l`` with ``specs[l] = LayerSpec(norm, ρ)``:

  .. math::
    w ← ρ · init(k_w, shape(w)),   so   ‖w‖ = ρ,

  with ``init`` the norm's :meth:`normax.Norm.init` and an independent key
  ``k_w`` per leaf (folded from ``key`` and the leaf's path, so adding a
  parameter does not change the others). This is
  Scion's boundary initialization (Pethick et al., 2025, Appendix E; their
  ``Scion.init``): a constrained layer starts on the boundary of its ball
  ``‖w‖ ≤ ρ``, which its updates keep it inside. ``Spectral`` draws a
  scaled orthogonal matrix, ``ColNorm`` rows of RMS ``ρ``, ``Sign`` entries
  ``±ρ/d_in`` (zeros with ``Sign(zero_init=True)``). A radius schedule
  contributes its value at step 0.

  A parameter with a :class:`normax.MatrixView` (from the labels, e.g.
  :class:`normax.Roles`, or its spec) is drawn on the sphere of the matrix
  its view forms.

  Labels in ``keep`` keep their values: e.g. normalization gains, which
  start at 1 and would otherwise get random signs from ``BiasRMS``'s sphere.
  Leaves whose label function gives ``None`` are kept too.

  Args:
    key: A JAX PRNG key.
    params: The parameters (any pytree; Flax NNX state or Linen dicts).
    labels: A label function or pytree, as for :func:`normax.scion`.
    specs: ``{label: LayerSpec}``.
    keep: Labels whose parameters are returned unchanged.

  Returns:
    Parameters of the same structure, shapes and dtypes.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> params = {"w": jnp.zeros((8, 16)), "b": jnp.ones(16)}
    >>> specs = {"hidden": normax.LayerSpec("spectral", radius=3.0),
    ...          "bias": normax.LayerSpec("bias_rms")}
    >>> new = normax.init_params(jax.random.key(0), params, {"w": "hidden", "b": "bias"},
    ...                          specs, keep=("bias",))
    >>> round(float(normax.Spectral().norm(new["w"])), 4), bool((new["b"] == 1).all())
    (3.0, True)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Appendix E (initialization on the boundary).
  """
  keep = frozenset(keep)
  unknown = sorted(keep - set(specs))
  if unknown:
    raise ValueError(f"keep names label(s) {unknown} that are not in specs {sorted(specs)}.")
  resolved = resolve_specs(params, labels, specs)  # Checks every label and shape.
  flat, treedef = jax.tree.flatten(params)
  flat_labels = treedef.flatten_up_to(broadcast_labels(params, labels))
  flat_specs = treedef.flatten_up_to(resolved)
  flat_paths = treedef.flatten_up_to(tree_paths(params))
  out = []
  for path, leaf, label, spec in zip(flat_paths, flat, flat_labels, flat_specs, strict=True):
    if label is None or label in keep:
      out.append(leaf)
      continue
    leaf = jnp.asarray(leaf)
    leaf_key = jax.random.fold_in(key, _path_seed(path))
    radius = _radius_at_start(spec.radius, label)
    if spec.view is None:
      value = spec.norm.init(leaf_key, leaf.shape, leaf.dtype)
    else:  # Drawn in the view's matrix layout: the sphere of the matrix the norm acts on.
      norm = spec.norm.for_view(spec.view, path)
      value = norm.init(leaf_key, spec.view.matrix_shape(leaf.shape), leaf.dtype)
      value = spec.view.back(value, leaf.shape)
    out.append((value.astype(acc_dtype(leaf.dtype)) * radius).astype(leaf.dtype))
  return treedef.unflatten(out)


def _path_seed(path: str) -> int:
  """A stable 31-bit integer from a parameter path (Python's ``hash`` is salted per process)."""
  h = 0
  for byte in path.encode():
    h = (h * 131 + byte) % (2**31 - 1)
  return h


def init_model(
  key: jax.Array, model: Any, labels: Any, specs: Mapping[str, LayerSpec], *, keep=()
) -> None:
  """:func:`init_params` on a Flax NNX model's ``nnx.Param`` state, in place.

  Args:
    key: A JAX PRNG key.
    model: An ``nnx.Module``.
    labels: A label function or pytree, as for :func:`normax.scion`.
    specs: ``{label: LayerSpec}``.
    keep: Labels whose parameters are left as they are.

  Examples:
    >>> import jax, normax
    >>> from flax import nnx
    >>> model = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
    >>> specs = {"hidden": normax.LayerSpec("spectral", radius=2.0),
    ...          "bias": normax.LayerSpec("bias_rms")}
    >>> labels = normax.label_by_path([("*kernel", "hidden"), ("*bias", "bias")])
    >>> normax.init_model(jax.random.key(0), model, labels, specs, keep=("bias",))
    >>> round(float(normax.Spectral().norm(model.kernel[...])), 4)
    2.0
  """
  from flax import nnx  # Flax is optional: only this helper needs it.

  state = nnx.state(model, nnx.Param)
  nnx.update(model, init_params(key, state, labels, specs, keep=keep))
