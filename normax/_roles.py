"""Every parameter's role and matrix view, read from the model's own computation.

:func:`infer_roles` traces a model (or any function of a parameter pytree) on an
example batch with ``jax.make_jaxpr`` -- nothing is computed -- and follows each
parameter leaf to the operations that consume it (see the walk in
``_jaxpr_uses``). The result, :class:`Roles`, is a label function: called on the
parameters (or updates) it gives each leaf its role, and :meth:`Roles.views`
gives each leaf its :class:`normax.MatrixView`, so every normax optimizer that
takes labels applies each norm to the right matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from normax._jaxpr_uses import Use, parameter_uses
from normax._labels import is_step_count, text_table
from normax._matrix_view import MatrixView
from normax._paths import is_value_wrapper, leaf_dtype, leaf_shape, path_to_str

#: The roles :func:`infer_roles` assigns, and what decides each.
ROLES: dict[str, str] = {
  "embed": "indexed by integer ids (gather, or a product with a one-hot matrix): an input table",
  "tied": "an input table that also computes the logits (the head)",
  "head": "the product whose output reaches the function's output through no other product",
  "hidden": "any other product (dot_general, ragged_dot): a dense kernel",
  "conv": "the kernel of a convolution (conv_general_dilated)",
  "gain": "used only entrywise, multiplied (a normalization scale)",
  "bias": "used only entrywise, added (a bias, a position table added to the inputs)",
  "unused": "not used by the computation (zero gradient)",
}


@dataclasses.dataclass(frozen=True)
class Role:
  """A parameter's role, its matrix view, and what decided them.

  Attributes:
    kind: One of :data:`normax.ROLES`: ``"embed"``, ``"tied"``, ``"head"``,
      ``"hidden"``, ``"conv"``, ``"gain"``, ``"bias"`` or ``"unused"``.
    view: The :class:`normax.MatrixView` of the leaf (``None`` for ``"unused"``).
    input: A product whose other operand reads the function's inputs with no
      parameter on its way (the first layer of an MLP on pixels, a patch
      embedding).
    op: The operation(s) that decided it, as text.

  Examples:
    >>> import normax
    >>> role = normax.Role("hidden", normax.MatrixView(fan_in=0, fan_out=(1, 2)))
    >>> role.describe((512, 8, 64))
    'hidden 512 × (8·64)'
  """

  kind: str
  view: MatrixView | None = None
  input: bool = False
  op: str = ""

  def __post_init__(self):
    if self.kind not in ROLES:
      raise ValueError(f"Unknown role {self.kind!r}; roles are {', '.join(ROLES)}.")
    if self.view is not None and not isinstance(self.view, MatrixView):
      raise TypeError(f"Role view must be a normax.MatrixView or None, got {self.view!r}.")

  def describe(self, shape: tuple[int, ...]) -> str:
    """``kind`` and the view of a leaf of ``shape`` (``'hidden 512 × (8·64)'``)."""
    view = "" if self.view is None else " " + self.view.describe(tuple(shape))
    return f"{self.kind}{' (input)' if self.input else ''}{view}"


# A static pytree (no leaves), so that it can sit in an optimizer state, as normax.LabelFn.
@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=True)
class Roles:
  """Each parameter's :class:`normax.Role`, by path: a label function with matrix views.

  Built by :func:`normax.infer_roles`. Called on a parameter pytree (params,
  updates, ``nnx.Param`` wrappers or not) it returns each leaf's label -- its
  role's kind, or the label :meth:`relabel` maps it to -- so it can be passed
  wherever normax or ``optax.partition`` takes labels; :meth:`views` gives
  each leaf's :class:`normax.MatrixView`, which :func:`normax.scion`,
  :func:`normax.muon` and :func:`normax.init_params` apply. Lookups are by
  path, so the tree must have the paths of the parameters that were traced.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"w": jnp.ones((3, 4, 2)), "b": jnp.ones(8)}
    >>> def fn(params, x):  # w is (d_in, heads, head_dim)
    ...   return jnp.einsum("bd,dhk->bhk", x, params["w"]).reshape(2, 8) + params["b"][None]
    >>> roles = normax.infer_roles(fn, params, jnp.ones((2, 3)))
    >>> roles({"w": jnp.zeros((3, 4, 2)), "b": jnp.zeros(8)})
    {'b': 'bias', 'w': 'head'}
    >>> roles["w"].view.describe((3, 4, 2))
    '3 × (4·2)'
    >>> roles.relabel({"head": "out", "bias": "bias"})(params)
    {'b': 'bias', 'w': 'out'}
  """

  entries: tuple[tuple[str, Role, tuple[int, ...]], ...]
  labels: tuple[tuple[str, str], ...] | None = None

  # -- lookups ----------------------------------------------------------------------------------

  def _table(self) -> dict[str, tuple[Role, tuple[int, ...]]]:
    return {path: (role, shape) for path, role, shape in self.entries}

  def __getitem__(self, path: str) -> Role:
    table = self._table()
    if path not in table:
      raise KeyError(f"No parameter at {path!r}; paths: {list(table)[:10]}.")
    return table[path][0]

  def __iter__(self):
    return iter(path for path, _, _ in self.entries)

  def __len__(self) -> int:
    return len(self.entries)

  def items(self) -> list[tuple[str, Role]]:
    """``(path, role)`` pairs in the parameters' order."""
    return [(path, role) for path, role, _ in self.entries]

  def label_of(self, role: Role) -> str:
    """The label of a role: its kind, or what :meth:`relabel` maps the kind to."""
    if self.labels is None:
      return role.kind
    mapping = dict(self.labels)
    if role.kind == "hidden" and role.input and "input" in mapping:
      return mapping["input"]
    return mapping[role.kind]

  def _roles_of(self, tree: Any) -> Any:
    table = self._table()
    missing = []

    def find(keys, x):
      path = path_to_str(keys)
      if path not in table:
        missing.append(f"{path} {leaf_shape(x)}")
        return None
      return table[path][0]

    out = jax.tree_util.tree_map_with_path(find, tree, is_leaf=is_value_wrapper)
    if missing:
      known = list(table)
      raise ValueError(
        f"{len(missing)} parameter(s) have no inferred role: {missing[:10]}. The roles know the"
        f" paths {known[:10]}{' ...' if len(known) > 10 else ''}. Infer them on the same"
        " parameter tree the optimizer gets (for Linen: the 'params' collection, e.g."
        " normax.infer_roles(lambda p, x: model.apply({'params': p}, x), params, x))."
      )
    return out

  def __call__(self, tree: Any) -> Any:
    if is_step_count(tree):  # optax.inject_hyperparams evaluating a "schedule".
      return self
    return jax.tree.map(self.label_of, self._roles_of(tree), is_leaf=lambda r: isinstance(r, Role))

  def views(self, tree: Any) -> Any:
    """Each leaf's :class:`normax.MatrixView` (``None`` where it has none), by path."""
    return jax.tree.map(
      lambda r: r.view, self._roles_of(tree), is_leaf=lambda r: isinstance(r, Role)
    )

  def roles(self, tree: Any) -> Any:
    """Each leaf's :class:`normax.Role`, as a pytree of ``tree``'s structure."""
    return self._roles_of(tree)

  # -- changing them ----------------------------------------------------------------------------

  def relabel(self, mapping: Mapping[str, str]) -> Roles:
    """The same roles with each kind's label replaced by ``mapping[kind]``.

    Every kind present must be mapped (an error lists the paths of those that
    are not), so a preset never silently drops a role. A key ``"input"``, if
    given, labels the hidden kernels that read the inputs directly (the first
    layer of an MLP on pixels).
    """
    present = {role.kind: path for path, role, _ in self.entries}
    missing = {k: p for k, p in present.items() if k not in mapping}
    if missing:
      where = ", ".join(f"{k!r} (e.g. {p!r})" for k, p in missing.items())
      raise ValueError(
        f"relabel: no label for the role(s) {where}; map every role present: {sorted(present)}."
      )
    return dataclasses.replace(self, labels=tuple(sorted(mapping.items())))

  def replace(self, path: str, role: Role) -> Roles:
    """The same roles with the parameter at ``path`` given ``role`` instead."""
    if path not in self._table():
      raise KeyError(f"No parameter at {path!r}.")
    entries = tuple((p, role if p == path else r, s) for p, r, s in self.entries)
    return dataclasses.replace(self, entries=entries)

  def per_head(self) -> Roles:
    """Attention kernels orthogonalized per head.

    A hidden kernel with several fan-out axes (``(d, heads, head_dim)``) or,
    failing that, several fan-in axes (``(heads, head_dim, d)``) keeps only
    the last of them in its matrix; the others join the stack: one
    ``d × head_dim`` (or ``head_dim × d``) matrix per head.
    """
    entries = []
    for path, role, shape in self.entries:
      if role.kind == "hidden" and role.view is not None and role.view.blocks == 1:
        stack, spatial, fan_in, fan_out = role.view.resolve(len(shape))
        if len(fan_out) > 1:
          stack, fan_out = stack + fan_out[:-1], fan_out[-1:]
        elif len(fan_in) > 1:
          stack, fan_in = stack + fan_in[:-1], fan_in[-1:]
        view = MatrixView(fan_in, fan_out, tuple(sorted(stack)), spatial)
        role = dataclasses.replace(role, view=view)
      entries.append((path, role, shape))
    return dataclasses.replace(self, entries=tuple(entries))

  # -- showing them -----------------------------------------------------------------------------

  def table(self) -> str:
    """A text table: path, shape, role, view and the deciding operation of every parameter."""
    rows = [("path", "shape", "role", "view", "decided by")]
    for path, role, shape in self.entries:
      view = "" if role.view is None else role.view.describe(shape)
      kind = role.kind + (" (input)" if role.input else "")
      rows.append((path, str(shape), kind, view, role.op))
    return text_table(rows)


# -- tracing --------------------------------------------------------------------------------------


def _is_traced_input(x: Any) -> bool:
  return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct | np.generic)


def _nnx():
  try:
    from flax import nnx
  except ImportError:  # pragma: no cover - flax is optional
    return None
  return nnx


def _linen():
  try:
    import flax.linen as nn
  except ImportError:  # pragma: no cover - flax is optional
    return None
  return nn


def _split(fn_or_model, args) -> tuple[Callable, Any, Any, tuple]:
  """``(fn, params, other_state, inputs)`` with ``fn(params, other_state, *inputs)``."""
  nnx, nn = _nnx(), _linen()
  if nnx is not None and isinstance(fn_or_model, nnx.Module):
    graphdef, params, rest = nnx.split(fn_or_model, nnx.Param, ...)
    return (lambda p, o, *a, **kw: nnx.merge(graphdef, p, o)(*a, **kw)), params, rest, args
  if not args:
    raise TypeError(
      "infer_roles(fn, params, *inputs) needs the parameters and an example batch; for an NNX"
      " model: infer_roles(model, *inputs)."
    )
  params, inputs = args[0], tuple(args[1:])
  if nn is not None and isinstance(fn_or_model, nn.Module):
    module = fn_or_model
    if isinstance(params, Mapping) and "params" in params:
      rest = {k: v for k, v in params.items() if k != "params"}
      apply = lambda p, o, *a, **kw: module.apply({"params": p, **o}, *a, **kw)  # noqa: E731
      return apply, params["params"], rest, inputs
    return (lambda p, o, *a, **kw: module.apply({"params": p}, *a, **kw)), params, {}, inputs
  if not callable(fn_or_model):
    raise TypeError(
      f"infer_roles expects an NNX module, a Linen module or a function fn(params, *inputs);"
      f" got {type(fn_or_model).__name__}."
    )
  fn = fn_or_model
  if nnx is not None and isinstance(params, nnx.Module):
    graphdef, state, rest = nnx.split(params, nnx.Param, ...)
    return (lambda p, o, *a, **kw: fn(nnx.merge(graphdef, p, o), *a, **kw)), state, rest, inputs
  return (lambda p, o, *a, **kw: fn(p, *a, **kw)), params, {}, inputs


def infer_roles(
  fn_or_model: Any,
  *args: Any,
  per_head: bool = False,
  overrides: Mapping[str, Role] | None = None,
  **kwargs: Any,
) -> Roles:
  r"""Each parameter's role and matrix view, read from the model's computation.

  Traces the model on an example batch with ``jax.make_jaxpr`` (no FLOPs, no
  device memory for activations) and follows every parameter leaf to the
  operations that consume it, through ``scan``, ``vmap``, ``remat``,
  ``jit``, ``cond``, custom derivatives, reshapes, transposes, casts and
  Flax's boxed values. The operation decides:

  =================================  =========  ====================================
  the leaf is consumed by            role       matrix view
  =================================  =========  ====================================
  ``gather`` / one-hot product       embed      fan-in = the indexed (vocab) axes
  the same, and the logits product   tied       that product's view
  the product giving the output      head       its contracting axes fan-in
  ``dot_general`` / ``ragged_dot``   hidden     contracting = fan-in, batch = stack,
                                                the rest fan-out
  ``conv_general_dilated``           conv       taps, in and out features from the
                                                dimension numbers (any layout)
  only entrywise (``mul``)           gain       a vector (its stack axes apart)
  only entrywise (``add`` ...)       bias       a vector
  =================================  =========  ====================================

  Axes sliced by ``scan`` (scanned layers) or batched by ``vmap`` (experts)
  are stack axes: one matrix per layer or expert. A product's output cut
  right after it along a fan-out axis (``jnp.split`` of a fused QKV
  projection, ``qkv[:, :, 0]``) gives one matrix per part. "The output" is
  what the traced function returns: trace the model's forward pass (the
  logits), or a loss whose last product is the head.

  A leaf consumed by products that disagree (two contractions, a table used
  as a hidden matrix) is an error naming it and every use, never a guess;
  ``overrides`` settles it.

  Args:
    fn_or_model: An ``nnx.Module`` (then ``args`` are its inputs); a Linen
      module (then ``args`` are ``variables`` or ``params``, then its inputs);
      or a function ``fn(params, *inputs)`` of any parameter pytree (an NNX
      module as ``params`` is split into its ``nnx.Param`` state).
    *args: As above. Arrays and ``jax.ShapeDtypeStruct``\ s are traced; other
      values (flags) are passed as they are.
    per_head: One matrix per attention head (see :meth:`Roles.per_head`).
    overrides: ``{path: normax.Role}`` for parameters whose role you state.
    **kwargs: Keyword arguments of the model or function (flags, masks).

  Returns:
    :class:`normax.Roles`, keyed by the paths of the parameter pytree the
    optimizer sees (``nnx.state(model, nnx.Param)`` for NNX; the ``'params'``
    collection for Linen).

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> from flax import nnx
    >>> attn = nnx.MultiHeadAttention(num_heads=4, in_features=32, decode=False,
    ...                               rngs=nnx.Rngs(0))
    >>> roles = normax.infer_roles(attn, jnp.ones((2, 5, 32)))
    >>> print(roles.table())
    path          shape       role            view          decided by
    key/bias      (4, 8)      bias            vector (4·8)  add
    key/kernel    (32, 4, 8)  hidden (input)  32 × (4·8)    dot_general (contracts 0)
    out/bias      (32,)       bias            vector 32     add
    out/kernel    (4, 8, 32)  head            (4·8) × 32    dot_general (contracts 0, 1) → output
    query/bias    (4, 8)      bias            vector (4·8)  add
    query/kernel  (32, 4, 8)  hidden (input)  32 × (4·8)    dot_general (contracts 0)
    value/bias    (4, 8)      bias            vector (4·8)  add
    value/kernel  (32, 4, 8)  hidden (input)  32 × (4·8)    dot_general (contracts 0)
    >>> roles.per_head()["query/kernel"].view.describe((32, 4, 8))
    '4 × [32 × 8]'

  References:
    Flax's ``nnx.MultiHeadAttention`` kernel layouts; Jordan et al.,
    *modded-nanogpt* (per-head and per-part orthogonalization).
  """
  fn, params, other, inputs = _split(fn_or_model, args)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path_to_str(p) for p, _ in flat]
  param_leaves = [x for _, x in flat]
  other_leaves, other_def = jax.tree.flatten(other)
  call_args = (inputs, kwargs)
  in_leaves, in_def = jax.tree.flatten(call_args)
  traced = [i for i, x in enumerate(in_leaves) if _is_traced_input(x)]

  def flat_fn(p, o, t):
    leaves = list(in_leaves)
    for i, x in zip(traced, t, strict=True):
      leaves[i] = x
    a, kw = jax.tree.unflatten(in_def, leaves)
    return fn(treedef.unflatten(p), jax.tree.unflatten(other_def, o), *a, **kw)

  as_struct = lambda x: jax.ShapeDtypeStruct(np.shape(x), leaf_dtype(x))  # noqa: E731
  closed = jax.make_jaxpr(flat_fn)(
    [as_struct(x) for x in param_leaves],
    [as_struct(x) for x in other_leaves],
    [as_struct(in_leaves[i]) for i in traced],
  )
  kinds = [None] * len(other_leaves) + [leaf_dtype(in_leaves[i]) for i in traced]
  uses = parameter_uses(closed, len(param_leaves), kinds)
  by_leaf: dict[int, list[Use]] = {}
  for use in uses:
    by_leaf.setdefault(use.leaf, []).append(use)
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(paths))
  if unknown:
    raise KeyError(f"overrides name paths that are not parameters: {unknown}; paths: {paths[:10]}")
  entries = []
  for i, (path, leaf) in enumerate(zip(paths, param_leaves, strict=True)):
    shape = tuple(np.shape(leaf))
    if path in overrides:
      role = overrides[path]
      if not isinstance(role, Role):
        raise TypeError(f"overrides[{path!r}] must be a normax.Role, got {role!r}.")
      if role.view is not None:
        role.view.check(shape, path)
    else:
      role = _decide(path, shape, leaf_dtype(leaf), by_leaf.get(i, []))
    entries.append((path, role, shape))
  roles = Roles(tuple(entries))
  return roles.per_head() if per_head else roles


# -- deciding -------------------------------------------------------------------------------------


def _signature(use: Use) -> tuple:
  return (use.fan_in, use.fan_out, use.stack, use.spatial, use.blocks, use.split_stack)


def _ambiguous(path, shape, dtype, uses: Iterable[Use], why: str) -> ValueError:
  lines = "\n".join(
    f"  - {u.describe()}{' → output' if u.head else ''}: fan-in {u.fan_in}, fan-out"
    f" {u.fan_out}, stack {u.stack}" + (f", taps {u.spatial}" if u.spatial else "")
    for u in uses
  )
  return ValueError(
    f"infer_roles: the parameter at {path!r} (shape {shape}, {dtype}) {why}:\n{lines}\n"
    "normax does not guess its norm. State its role and view, e.g. infer_roles(...,"
    f" overrides={{{path!r}: normax.Role('hidden', normax.MatrixView(fan_in=0, fan_out=1))}})."
  )


def _view(path, shape, dtype, use: Use) -> MatrixView:
  """The view a use gives a leaf; every axis must be accounted for."""
  stack = set(use.stack) | set(use.split_stack)
  fan_out = tuple(a for a in use.fan_out if a not in use.split_stack)
  named = list(use.fan_in) + list(fan_out) + list(use.spatial)
  overlap = stack & set(named)
  if overlap or len(set(named)) != len(named):
    raise _ambiguous(path, shape, dtype, [use], "is read with an axis in two roles")
  free = [a for a in range(len(shape)) if a not in stack and a not in named]
  lost = [a for a in free if shape[a] != 1]
  if lost:
    raise _ambiguous(
      path, shape, dtype, [use], f"has axes {lost} that reach this product reduced or broadcast"
    )
  stack |= set(free)  # Size-1 axes: a stack of one.
  return MatrixView(use.fan_in, fan_out, tuple(sorted(stack)), use.spatial, use.blocks)


def _with_hints(use: Use, hints: set[int]) -> Use:
  """A hidden product's fan-out axes that meet another kernel's stack axis downstream (an
  expert's hidden units) are stack axes; never all of them."""
  moved = tuple(a for a in use.fan_out if a in hints)
  if use.kind != "dot" or not moved or len(moved) == len(use.fan_out):
    return use
  fan_out = tuple(a for a in use.fan_out if a not in hints)
  return dataclasses.replace(use, fan_out=fan_out, stack=tuple(sorted(set(use.stack) | set(moved))))


def _decide(path: str, shape: tuple[int, ...], dtype, uses: list[Use]) -> Role:
  unresolved = [u for u in uses if u.unresolved and u.kind != "elementwise"]
  if unresolved:
    raise _ambiguous(
      path, shape, dtype, unresolved,
      f"reaches a product with axes {sorted({a for u in unresolved for a in u.unresolved})}"
      " split or reduced on the way, so its matrix cannot be read",
    )  # fmt: skip
  hints = {a for u in uses if u.kind == "stack_hint" for a in u.stack}
  uses = [_with_hints(u, hints) for u in uses if u.kind != "stack_hint"]
  embeds = [u for u in uses if u.kind == "embed"]
  convs = [u for u in uses if u.kind == "conv"]
  heads = [u for u in uses if u.kind == "dot" and u.head]
  dots = [u for u in uses if u.kind == "dot" and not u.head]

  def one(group: list[Use], why: str) -> Use:
    signatures = {_signature(u) for u in group}
    if len(signatures) > 1:
      raise _ambiguous(path, shape, dtype, group, why)
    return group[0]

  def ops(group: list[Use], suffix: str = "") -> str:
    return " + ".join(dict.fromkeys(u.describe() for u in group)) + suffix

  if embeds:
    if convs or dots:
      raise _ambiguous(path, shape, dtype, embeds + convs + dots, "is both a table and a kernel")
    lookup = one(embeds, "is indexed along different axes")
    if heads:
      head = one(heads, "computes the output with different contractions")
      view = _view(path, shape, dtype, head)
      return Role("tied", view, op=f"{ops(embeds)} + {ops(heads, ' → output')}")
    return Role("embed", _view(path, shape, dtype, lookup), op=ops(embeds))
  if convs:
    if dots or heads:
      raise _ambiguous(path, shape, dtype, convs + dots + heads, "is a conv and a dense kernel")
    use = one(convs, "is read with different layouts by convolutions")
    view = _view(path, shape, dtype, use)
    return Role("conv", view, input=all(u.input for u in convs), op=ops(convs))
  if heads and dots:
    raise _ambiguous(
      path, shape, dtype, heads + dots, "computes the output and a hidden activation"
    )
  if heads:
    use = one(heads, "computes the output with different contractions")
    view = _view(path, shape, dtype, use)
    return Role("head", view, input=all(u.input for u in heads), op=ops(heads, " → output"))
  if dots:
    use = one(dots, "is consumed by products with different contractions")
    view = _view(path, shape, dtype, use)
    return Role("hidden", view, input=all(u.input for u in dots), op=ops(dots))
  if uses:
    stack = {a for u in uses for a in u.stack} | {a for a, n in enumerate(shape) if n == 1}
    rest = tuple(a for a in range(len(shape)) if a not in stack)
    stack = tuple(sorted(stack))
    view = MatrixView((), rest, stack) if rest else None
    kind = "gain" if any(u.multiplicative for u in uses) else "bias"
    return Role(kind, view, op=" + ".join(dict.fromkeys(u.primitive for u in uses)))
  return Role("unused", None, op="(no use)")
