r"""QK-Clip (Kimi K2's MuonClip): the query and key weights of each attention head whose
largest logit exceeded ``τ`` rescaled after the step, so that the logit comes back to ``τ``.

:func:`qk_layers` finds each attention layer's query and key projections in the
parameter tree (by Flax's names, or as stated with :class:`QKLayer`);
:func:`qk_clip` is the optax transform, run after an optimizer's update. The
heads' slices of each kernel come from its :class:`normax.MatrixView`: the
fan-out axes of a query kernel hold ``heads × head_dim`` output features
(head-major), a fused QKV kernel's parts are the blocks of its view or one of
its stack axes, and any other stack axis is a layer stack (scanned layers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from normax._matrix_view import MatrixView
from normax._paths import is_value_wrapper, leaf_shape, path_to_str
from normax._roles import Roles
from normax._rules import glob_match

# Names of the query and key projections under an attention layer, tried in order: Flax's
# nnx.MultiHeadAttention and Linen's MultiHeadDotProductAttention, then common spellings.
_QK_NAMES = (("query", "key"), ("q", "k"), ("q_proj", "k_proj"), ("wq", "wk"), ("to_q", "to_k"))
# Names of a fused query-key-value projection (nanoGPT's c_attn, PyTorch's in_proj).
_FUSED_NAMES = ("qkv", "c_attn", "wqkv", "qkv_proj", "in_proj", "query_key_value")


@dataclasses.dataclass(frozen=True)
class QKLayer:
  """Where an attention layer's query and key projections are in the parameter tree.

  Attributes:
    query: The path of the query kernel.
    key: The path of the key kernel; the same path as ``query`` for a fused
      QKV kernel.
    query_bias: The path of the query bias; ``None``: no bias; ``"auto"``
      (default): the sibling ``bias`` of a ``.../kernel`` path, if the
      parameters have one.
    key_bias: The same for the key.
    parts: For a fused kernel, the indices of the query and key parts
      (``(0, 1)``: q, k, v order).
    part_axis: For a fused kernel whose parts are an axis of the leaf
      (``nnx.LinearGeneral(d, (3, heads, head_dim))``), that axis; ``None``:
      the blocks of its matrix view when it has blocks (an ``nnx.Linear(d,
      3d)`` split by ``jnp.split``), else its last stack axis.

  Examples:
    >>> import normax
    >>> layer = normax.QKLayer("attn/q/kernel", "attn/k/kernel")
    >>> layer.query, layer.query_bias
    ('attn/q/kernel', 'auto')
  """

  query: str
  key: str
  query_bias: str | None = "auto"
  key_bias: str | None = "auto"
  parts: tuple[int, int] = (0, 1)
  part_axis: int | None = None

  def __post_init__(self):
    # An axis: negative counts from the end, as in NumPy; not a number otherwise.
    if self.part_axis is not None and (
      isinstance(self.part_axis, bool) or not isinstance(self.part_axis, int)
    ):
      raise TypeError(f"normax.QKLayer part_axis must be an int or None, got {self.part_axis!r}.")

  @property
  def fused(self) -> bool:
    """Whether query and key are parts of one kernel."""
    return self.query == self.key


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_value_wrapper)[0]
  return {path_to_str(p): leaf_shape(x) for p, x in flat}


def _join(*parts: str) -> str:
  return "/".join(p for p in parts if p)


def _leaf(paths, layer: str, name: str) -> str | None:
  for path in (_join(layer, name, "kernel"), _join(layer, name)):
    if path in paths:
      return path
  return None


def _conventional(paths, layer: str) -> list[QKLayer]:
  found = []
  for q, k in _QK_NAMES:
    query, key = _leaf(paths, layer, q), _leaf(paths, layer, k)
    if query and key:
      found.append(QKLayer(query, key))
  for name in _FUSED_NAMES:
    fused = _leaf(paths, layer, name)
    if fused:
      found.append(QKLayer(fused, fused))
  return found


def _bias(paths, kernel: str, bias: str | None, what: str, layer: str) -> str | None:
  if bias == "auto":
    if not kernel.endswith("kernel"):
      return None
    sibling = kernel[: -len("kernel")] + "bias"
    return sibling if sibling in paths else None
  if bias is not None and bias not in paths:
    raise ValueError(f"qk_layers: the {what} of layer {layer!r} at {bias!r} is not a parameter.")
  return bias


def _checked(spec: Any, name: str, paths) -> QKLayer:
  if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(p, str) for p in spec):
    spec = QKLayer(*spec)
  if not isinstance(spec, QKLayer):
    raise TypeError(
      f"qk_layers: layer {name!r} is {spec!r}; give a normax.QKLayer(query_path, key_path) or a"
      " (query_path, key_path) tuple."
    )
  for what, path in (("query kernel", spec.query), ("key kernel", spec.key)):
    if path not in paths:
      close = [p for p in paths if p.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]][:6]
      raise ValueError(
        f"qk_layers: the {what} of layer {name!r} at {path!r} is not a parameter; parameters"
        f" with that last name: {close}."
      )
  query_bias = _bias(paths, spec.query, spec.query_bias, "query bias", name)
  key_bias = _bias(paths, spec.key, spec.key_bias, "key bias", name)
  return dataclasses.replace(spec, query_bias=query_bias, key_bias=key_bias)


def qk_layers(params: Any, layers: str | Sequence[str] | Mapping[str, Any]) -> dict[str, QKLayer]:
  """Each attention layer's query and key projections, found by name (or as stated).

  ``layers`` names the attention layers: a path or component-wise glob
  (``"blocks/*/attn"``, as in :func:`normax.label_by_path`), or a list of
  them. Under each module path it matches, the projections are looked up by
  Flax's names and common ones, each as ``<name>/kernel`` or a bare leaf
  ``<name>``:

  - separate: ``query``/``key`` (``nnx.MultiHeadAttention``, Linen's
    ``MultiHeadDotProductAttention``), ``q``/``k``, ``q_proj``/``k_proj``,
    ``wq``/``wk``, ``to_q``/``to_k``;
  - fused (one kernel, q, k and v parts in that order): ``qkv``,
    ``c_attn``, ``wqkv``, ``qkv_proj``, ``in_proj``, ``query_key_value``.

  A glob keeps the module paths where exactly one of these is found; ``"/"``
  names the root (a bare attention module). The biases are the kernels'
  sibling ``bias`` leaves, when present. Any other layout: a mapping
  ``{layer name: normax.QKLayer(...)}`` (or ``(query path, key path)``).

  Args:
    params: The parameter tree the optimizer sees (its paths and shapes).
    layers: Layer paths or globs, or a mapping from layer name to
      :class:`normax.QKLayer`.

  Returns:
    ``{layer name: QKLayer}`` with every bias resolved (a path or ``None``),
    in the parameters' order. The layer name is the module path, under which
    :func:`normax.qk_clip` looks for the layer's max logits.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"blocks": [{"attn": {"query": {"kernel": jnp.ones((8, 2, 4))},
    ...                                "key": {"kernel": jnp.ones((8, 2, 4))}}}] * 2}
    >>> for name, layer in normax.qk_layers(params, "blocks/*/attn").items():
    ...   print(name, layer.query, layer.key)
    blocks/0/attn blocks/0/attn/query/kernel blocks/0/attn/key/kernel
    blocks/1/attn blocks/1/attn/query/kernel blocks/1/attn/key/kernel
  """
  paths = _leaf_shapes(params)
  if isinstance(layers, Mapping):
    return {name: _checked(spec, name, paths) for name, spec in layers.items()}
  patterns = [layers] if isinstance(layers, str) else list(layers)
  if not patterns or not all(isinstance(p, str) for p in patterns):
    raise TypeError(
      f"qk_layers: layers must be a path or glob, a list of them, or a mapping from layer name"
      f" to normax.QKLayer; got {layers!r}."
    )
  prefixes = list(
    dict.fromkeys(p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1))
  )
  prefixes = [""] + prefixes
  out: dict[str, QKLayer] = {}
  for pattern in patterns:
    if pattern.strip("/"):
      matched = [p for p in prefixes if p and glob_match(pattern, p)]
    else:
      matched = [""]
    found = {p: _conventional(paths, p) for p in matched}
    ambiguous = {p: f for p, f in found.items() if len(f) > 1}
    if ambiguous:
      layer, specs = next(iter(ambiguous.items()))
      raise ValueError(
        f"qk_layers: layer {layer!r} has more than one query/key projection:"
        f" {[(s.query, s.key) for s in specs]}. Say which with a mapping,"
        f" {{{layer!r}: normax.QKLayer(query_path, key_path)}}."
      )
    hits = {p: f[0] for p, f in found.items() if f}
    if not hits:
      names = ", ".join(f"{q}/{k}" for q, k in _QK_NAMES) + "; fused " + ", ".join(_FUSED_NAMES)
      where = f"the module paths {matched[:8]}" if matched else "no module path"
      raise ValueError(
        f"qk_layers: the pattern {pattern!r} matches {where}, and none has a query and key"
        f" projection under the names looked for ({names}; each as <name>/kernel or <name>)."
        f" Module paths: {[p for p in prefixes if p][:10]}. Name the attention modules, or"
        " give a mapping {layer name: normax.QKLayer(query_path, key_path)}."
      )
    for layer, spec in hits.items():
      out[layer] = _checked(spec, layer, paths)
  order = {p: i for i, p in enumerate(paths)}
  return dict(sorted(out.items(), key=lambda item: order[item[1].query]))


# -- the heads' slices of a kernel ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Slot:
  """One projection (a kernel, or one part of a fused kernel) in its matrix layout
  ``stack + [blocks] + (fan_in, features)``: which leading axis holds the part (``part``:
  position, index, count), the sizes of the others (a layer stack), the output features."""

  path: str
  shape: tuple[int, ...]
  view: MatrixView
  part: tuple[int, int, int] | None
  layer_dims: tuple[int, ...]
  features: int


def _view_of(path: str, shape, roles: Roles | None, what: str, layer: str) -> MatrixView:
  if roles is not None:
    try:
      view = roles[path].view
    except KeyError:
      raise ValueError(
        f"normax.qk_clip: the roles have no parameter at {path!r} (the {what} of layer"
        f" {layer!r}); infer them on the parameter tree the optimizer gets."
      ) from None
    if view is None:
      raise ValueError(
        f"normax.qk_clip: the {what} of layer {layer!r} at {path!r} (shape {shape}) has no"
        " matrix view in the roles (is it used by the model?)."
      )
    return view
  if len(shape) == 2:
    return MatrixView(0, 1)
  raise ValueError(
    f"normax.qk_clip: the {what} of layer {layer!r} at {path!r} has shape {shape}; which of"
    " its axes hold the heads is read from its matrix view. Pass"
    " roles=normax.infer_roles(model, example_batch)."
  )


def _slot(path, shape, view, spec: QKLayer, index: int, what: str, layer: str) -> _Slot:
  stack, spatial, fan_in, _ = view.resolve(len(shape))
  described = f"{path!r} (shape {shape}, view {view.describe(shape)})"
  if spatial or not fan_in:
    raise ValueError(
      f"normax.qk_clip: the {what} of layer {layer!r} at {described} is not a dense projection."
    )
  lead = [shape[a] for a in stack] + ([view.blocks] if view.blocks > 1 else [])
  part = None
  if spec.fused:
    if view.blocks > 1 and spec.part_axis is None:
      part = (len(stack), index, view.blocks)
    else:
      if spec.part_axis is None and not stack:
        raise ValueError(
          f"normax.qk_clip: the fused kernel of layer {layer!r} at {described} has neither"
          " blocks nor a stack axis to hold its q, k and v parts. Pass roles from"
          " normax.infer_roles, or QKLayer(..., part_axis=...)."
        )
      axis = stack[-1] if spec.part_axis is None else spec.part_axis % len(shape)
      if axis not in stack:
        raise ValueError(
          f"normax.qk_clip: part_axis={spec.part_axis} of layer {layer!r} is not a stack axis of"
          f" {described}."
        )
      part = (stack.index(axis), index, shape[axis])
    if not 0 <= index < part[2]:
      raise ValueError(
        f"normax.qk_clip: layer {layer!r} takes part {index} of {described}, which has"
        f" {part[2]} parts."
      )
  elif view.blocks > 1:
    raise ValueError(
      f"normax.qk_clip: the {what} of layer {layer!r} at {described} has its fan-out cut into"
      f" {view.blocks} blocks; name it as the fused kernel (query and key the same path)."
    )
  layer_dims = tuple(n for i, n in enumerate(lead) if part is None or i != part[0])
  return _Slot(path, tuple(shape), view, part, layer_dims, view.matrix_shape(shape)[-1])


def _factor(slot: _Slot, heads: jax.Array) -> jax.Array:
  """The kernel-shaped factor: ``heads[..., h]`` on head ``h``'s output features, 1 elsewhere."""
  rep = jnp.repeat(heads, slot.features // heads.shape[-1], axis=-1)[..., None, :]
  if slot.part is not None:
    pos, index, count = slot.part
    rep = jnp.expand_dims(rep, pos)
    shape = [1] * rep.ndim
    shape[pos] = count
    rep = jnp.where((jnp.arange(count) == index).reshape(shape), rep, 1.0)
  full = jnp.broadcast_to(rep, slot.view.matrix_shape(slot.shape))
  return slot.view.back(full, slot.shape)


def _bias_factor(slot: _Slot, factor: jax.Array, bias: str, bias_shape, layer: str) -> jax.Array:
  """The kernel's factor without its fan-in axes: the bias adds to the same output features."""
  fan_in = slot.view.resolve(len(slot.shape))[2]
  for axis in sorted(fan_in, reverse=True):
    factor = jnp.take(factor, 0, axis=axis)
  if factor.shape != tuple(bias_shape):
    raise ValueError(
      f"normax.qk_clip: the bias of layer {layer!r} at {bias!r} has shape {tuple(bias_shape)};"
      f" the kernel {slot.path!r} {slot.shape} without its fan-in axes is {factor.shape}. State"
      " the bias with QKLayer(..., query_bias=..., key_bias=...) or None."
    )
  return factor


# -- the max logits -------------------------------------------------------------------------------


def _collect(max_logits: Any, names: list[str]) -> dict[str, jax.Array]:
  """Each layer's max logits: the entries of ``max_logits`` at or below its path (the longest
  matching layer), their maximum if there are several (a module called more than once)."""
  if isinstance(max_logits, jax.Array) or hasattr(max_logits, "__array__"):
    if len(names) != 1:
      raise ValueError(
        f"normax.qk_clip: max_logits is one array but there are {len(names)} attention layers"
        f" {names[:6]}; pass a mapping {{layer name: per-head max logits}} or the sown tree."
      )
    return {names[0]: jnp.asarray(max_logits)}
  flat = jax.tree_util.tree_flatten_with_path(max_logits)[0]
  found: dict[str, list[jax.Array]] = {}
  strays = []
  for keys, value in flat:
    path = path_to_str(keys)
    owners = [n for n in names if not n or path == n or path.startswith(n + "/")]
    if not owners:
      strays.append(path)
      continue
    found.setdefault(max(owners, key=len), []).append(jnp.asarray(value))
  missing = [n for n in names if n not in found]
  if missing or strays:
    given = [path_to_str(k) for k, _ in flat][:8]
    raise ValueError(
      f"normax.qk_clip: max_logits do not match the attention layers: no entry for {missing}"
      f"{' and entries for no layer at ' + str(strays[:6]) if strays else ''}. The layers are"
      f" {names[:8]}; max_logits has entries at {given}. Pass {{layer name: max logits}}, or the"
      " tree sown by normax.attention_with_max_logits (NNX: the nnx.Intermediate state from"
      " nnx.capture; Linen: the 'intermediates' collection itself)."
    )
  out = {}
  for name, values in found.items():
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
      raise ValueError(
        f"normax.qk_clip: the max logits recorded under layer {name!r} have different shapes"
        f" {sorted(shapes)}."
      )
    out[name] = values[0] if len(values) == 1 else jnp.max(jnp.stack(values), axis=0)
  return out


def _head_factors(m, q: _Slot, k: _Slot, tau, alpha, shared_key, layer):
  """The query heads' and key heads' factors from the layer's max logits ``m`` (layers, heads)."""
  if m.ndim < 1 or m.shape[:-1] != q.layer_dims:
    raise ValueError(
      f"normax.qk_clip: layer {layer!r} has max logits of shape {m.shape}; its query kernel"
      f" {q.path!r} {q.shape} (view {q.view.describe(q.shape)}) is a stack {q.layer_dims} of"
      f" projections, so they must have shape {q.layer_dims} + (heads,). (Roles from"
      " per_head() put the heads in the stack: pass roles without per_head.)"
    )
  heads = m.shape[-1]
  if q.features % heads:
    raise ValueError(
      f"normax.qk_clip: layer {layer!r} has {heads} query heads but its query projection"
      f" {q.path!r} has {q.features} output features, not a multiple."
    )
  head_dim = q.features // heads
  kv_heads = k.features // head_dim
  if k.features % head_dim or heads % kv_heads or k.layer_dims != q.layer_dims:
    raise ValueError(
      f"normax.qk_clip: layer {layer!r}: the key projection {k.path!r} {k.shape} (view"
      f" {k.view.describe(k.shape)}, {k.features} features) does not hold a divisor of the"
      f" {heads} query heads of head_dim {head_dim} over the same layer stack {q.layer_dims}."
    )
  m = m.astype(jnp.promote_types(m.dtype, jnp.float32))
  gamma = tau / jnp.maximum(m, tau)  # τ/S where S > τ, else exactly 1
  if kv_heads == heads:
    return gamma**alpha, gamma ** (1.0 - alpha)
  if shared_key == "query":
    return gamma, jnp.ones(m.shape[:-1] + (kv_heads,), gamma.dtype)
  group = gamma.reshape(m.shape[:-1] + (kv_heads, heads // kv_heads)).min(axis=-1)
  return gamma**alpha, group ** (1.0 - alpha)


# -- the transform --------------------------------------------------------------------------------


def qk_clip(
  layers: str | Sequence[str] | Mapping[str, Any],
  tau: float = 100.0,
  alpha: float = 0.5,
  *,
  roles: Roles | None = None,
  shared_key: Literal["query", "group"] = "query",
) -> optax.GradientTransformationExtraArgs:
  r"""QK-Clip: rescale each attention head whose max logit exceeded ``τ`` (Kimi K2's MuonClip).

  Put it after an optimizer's update and pass the forward pass's per-head
  max logits to ``update`` as ``max_logits=``. For a head ``h`` of a layer
  whose largest pre-softmax logit on the batch was ``S_h``
  (:func:`normax.max_logits`), with ``γ_h = τ / S_h`` when ``S_h > τ`` and
  ``1`` otherwise, the *updated* weights are rescaled:

  .. math::
    W_q^h \leftarrow γ_h^{α}\, W_q^h, \qquad W_k^h \leftarrow γ_h^{1-α}\, W_k^h,

  where ``W_q^h`` is the slice of the query projection (kernel and bias)
  that computes head ``h``'s queries, and likewise for keys. Each logit
  ``q·k`` of the head is then multiplied by ``γ_h`` exactly, so on the batch
  the logits were measured on, the head's max logit becomes ``τ``. Other heads,
  the values and every other parameter are left alone.

  **As an optax update.** With ``u`` the incoming update (the optimizer's
  step, already carrying ``-γ``) and ``p`` the current weights, the
  optimizer would set ``p + u``; QK-Clip emits

  .. math::
    u' = u + (f - 1) ⊙ (p + u), \qquad\text{so}\qquad p + u' = f ⊙ (p + u),

  with ``f`` the per-entry factor (``γ_h^α`` on head ``h``'s query slice, and
  so on, ``1`` elsewhere): the weights the optimizer produced, rescaled, as
  Kimi K2 applies it after the Muon step. Below ``τ`` (``f = 1``) ``u`` passes
  unchanged, bit for bit. The logits are those of the forward pass before the
  step, so the bound holds exactly on the measured batch for the weights
  they were measured with; the step itself can move the next batch's logits.

  **Which heads.** The heads are found in each kernel's
  :class:`normax.MatrixView` (from ``roles``): a query kernel's fan-out axes
  hold ``heads × head_dim`` output features, head-major (``nnx.MultiHeadAttention``
  ``(d, heads, head_dim)``, an ``nnx.Linear(d, heads·head_dim)``); a fused QKV
  kernel's parts are its view's blocks (``nnx.Linear(d, 3d)`` split by
  ``jnp.split``) or a stack axis (``nnx.LinearGeneral(d, (3, heads,
  head_dim))``); any other stack axis is a layer stack (scanned layers), and
  the max logits then have shape ``(layers, heads)``. The number of heads is
  the max logits' last axis; the head dimension and the number of key heads
  follow from the kernels' sizes. Without ``roles`` only 2-D kernels can be
  read.

  **Grouped-query attention.** A key head shared by ``g`` query heads (query
  heads ``h`` with ``⌊h/g⌋ = j`` share key head ``j``, Flax's and JAX's
  convention):

  - ``shared_key="query"`` (default): the key head is left alone and each
    query head takes its whole factor ``γ_h``, as Kimi K2 treats the key
    component shared by every head in multi-head latent attention (its
    shared rotary key is not clipped, the per-head rotary query takes
    ``γ_h``). Every head's logits scale by exactly ``γ_h``; ``α`` applies to
    layers whose key heads are not shared.
  - ``shared_key="group"``: the key head takes ``(min_{h in group} γ_h)^{1-α}``
    (the max logit of its group) and each query head ``γ_h^α``: the query and
    key weights share the clip as in multi-head attention, the group's
    largest head comes back to ``τ`` and the others by at least their own
    ``γ_h`` (a head of the group below ``τ`` may be scaled down too).

  **Biases, RoPE, QK-norm.** The query and key biases are rescaled with
  their kernels, so ``q = xW_q + b_q`` scales by ``γ^α`` exactly and the
  bound holds with biases. Rotary embeddings rotate each head's ``q`` and
  ``k`` by a linear map, so ``RoPE(γ^α q)·RoPE(γ^{1-α} k) = γ · RoPE(q)·RoPE(k)``:
  exact too. An additive attention bias (ALiBi) is not scaled, and
  :func:`normax.max_logits` leaves it out. With a normalization of ``q``
  and ``k`` after the projections (QK-norm) the logits do not depend on the
  projections' scale and QK-Clip has no effect. The guide, with a
  measurement on a character-level GPT: :doc:`/qk_clip`.

  Args:
    layers: The attention layers: paths or globs of their modules (their
      projections found by name, :func:`normax.qk_layers`), or a mapping
      ``{layer name: normax.QKLayer(query_path, key_path)}``.
    tau: The threshold ``τ`` (Kimi K2: 100), on the logits as
      :func:`normax.max_logits` measures them (``q·k/√head_dim``).
    alpha: The query's share ``α`` of the factor (Kimi K2: 0.5).
    roles: :class:`normax.Roles` from :func:`normax.infer_roles` (not
      ``per_head``): each kernel's matrix view. Needed unless every query and
      key kernel is a 2-D ``(d_in, heads·head_dim)`` matrix.
    shared_key: How a key head shared by several query heads is clipped
      (above).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(updates,
    state, params, max_logits=...)`` needs ``params`` and ``max_logits``: a
    tree whose entries sit at or below each layer's name (what
    ``nnx.capture(..., nnx.Intermediate)`` returns when the attention sows
    with :func:`normax.attention_with_max_logits`; a Linen model's
    ``"intermediates"`` collection) or a mapping ``{layer name: (...,
    heads)}``; several entries under one layer count by their maximum.
    ``optax.chain`` passes ``max_logits`` on, and ``nnx.Optimizer.update(model,
    grads, max_logits=...)`` passes it to ``update``.

  Examples:
    >>> import jax, jax.numpy as jnp, normax, optax
    >>> params = {"attn": {"q": {"kernel": jnp.ones((4, 2 * 3))},  # d=4, 2 heads of 3
    ...                    "k": {"kernel": jnp.ones((4, 2 * 3))}}}
    >>> tx = optax.chain(optax.sgd(0.0), normax.qk_clip("attn", tau=100.0))
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params,
    ...                            max_logits={"attn": jnp.array([400.0, 50.0])})
    >>> new = optax.apply_updates(params, updates)
    >>> new["attn"]["q"]["kernel"][0]  # head 0: (100/400)^0.5; head 1 below τ
    Array([0.5, 0.5, 0.5, 1. , 1. , 1. ], dtype=float32)

    With Muon, on a Flax model whose attention records its max logits::

      tx = normax.muon(0.02, roles=roles, qk_clip=normax.qk_clip("blocks/*/attn", roles=roles))
      # or: optax.chain(normax.muon(0.02, roles=roles), normax.qk_clip(...))
      (loss, sown), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
      optimizer.update(model, grads, max_logits=sown)

  References:
    Kimi Team, *Kimi K2: Open Agentic Intelligence*, 2025, Sec. 2.1 and
    Algorithm 1 (MuonClip: QK-Clip after the Muon step, ``τ = 100``, per-head
    factors, the shared rotary key of multi-head latent attention left
    alone).
  """
  tau = float(tau)
  alpha = float(alpha)
  if not (tau > 0 and tau < float("inf")):
    raise ValueError(f"normax.qk_clip: tau must be a finite number > 0, got {tau}.")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"normax.qk_clip: alpha must be in [0, 1], got {alpha}.")
  if shared_key not in ("query", "group"):
    raise ValueError(f"normax.qk_clip: shared_key must be 'query' or 'group', got {shared_key!r}.")
  if roles is not None and not isinstance(roles, Roles):
    raise TypeError(
      f"normax.qk_clip: roles must be normax.Roles from normax.infer_roles, got {type(roles)}."
    )

  def plan(params):
    shapes = _leaf_shapes(params)
    out = []
    for name, spec in qk_layers(params, layers).items():
      slots = []
      for what, path, index in (("query kernel", spec.query, spec.parts[0]),
                                ("key kernel", spec.key, spec.parts[1])):  # fmt: skip
        view = _view_of(path, shapes[path], roles, what, name)
        slots.append(_slot(path, shapes[path], view, spec, index, what, name))
      out.append((name, spec, *slots))
    return shapes, out

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, max_logits=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
        "normax.qk_clip rescales the weights the step produces, so it needs them:"
        " tx.update(updates, state, params, max_logits=...)."
      )
    if max_logits is None:
      raise ValueError(
        "normax.qk_clip needs the forward pass's per-head max logits:"
        " tx.update(updates, state, params, max_logits=...) (nnx.Optimizer.update(model, grads,"
        " max_logits=...)). Record them with normax.attention_with_max_logits or"
        " normax.max_logits."
      )
    shapes, layers_ = plan(params)
    measured = _collect(max_logits, [name for name, *_ in layers_])
    factors: dict[str, jax.Array] = {}

    def scale(path, factor):
      factors[path] = factor if path not in factors else factors[path] * factor

    for name, spec, q, k in layers_:
      a, b = _head_factors(jnp.asarray(measured[name]), q, k, tau, alpha, shared_key, name)
      for slot, heads, bias in ((q, a, spec.query_bias), (k, b, spec.key_bias)):
        factor = _factor(slot, heads)
        scale(slot.path, factor)
        if bias is not None:
          scale(bias, _bias_factor(slot, factor, bias, shapes[bias], name))

    flat_u, treedef = jax.tree_util.tree_flatten_with_path(updates)
    flat_p = jax.tree.leaves(params)
    if len(flat_p) != len(flat_u):
      raise ValueError("normax.qk_clip: params and updates have different structures.")
    out = []
    for (keys, u), p in zip(flat_u, flat_p, strict=True):
      factor = factors.get(path_to_str(keys))
      if factor is None:
        out.append(u)
      else:
        new = p.astype(factor.dtype) + u.astype(factor.dtype)
        out.append(u + ((factor - 1.0) * new).astype(u.dtype))
    return treedef.unflatten(out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


__all__ = ["QKLayer", "qk_clip", "qk_layers"]
