"""Following parameters through a jaxpr to the operations that consume them.

:func:`parameter_uses` walks the jaxpr of ``fn(params, *inputs)`` forward from the
parameter leaves. While a value is computed from parameters alone (a reshape, a
transpose, a cast, a slice of a parameter, a product of parameters with
constants), it carries a *flow* per leaf: for each of its axes, the leaf axes it
holds. When a parameter-only value meets the inputs, that operation *uses* the
leaf, and the use records what the operation says about each leaf axis:

- ``dot_general``: contracting axes are fan-in, batch axes a stack (vmapped
  layers, experts), free axes fan-out; a product with a value built from
  integers alone (a one-hot matrix) is an embedding lookup;
- ``conv_general_dilated``: spatial, input-feature and output-feature axes from
  its ``rhs_spec``; ``ragged_dot_general``: group axes are a stack;
- ``gather`` with many indices (token ids, positions): an embedding lookup, its
  indexed axes the vocabulary;
- anything else (``add``, ``mul``, ``concatenate`` ...): an elementwise use.

An axis sliced away by ``scan`` (a leaf passed as ``xs``), or indexed to one
element and dropped (``w[i]``, ``dynamic_slice`` then ``squeeze``), is a stack
axis. ``jit``, ``remat``, ``custom_jvp_call``/``custom_vjp_call``, ``cond``,
``while`` and ``scan`` are followed into their inner jaxprs. A product whose
output reaches the function's output through no other product (and feeds none)
is marked ``head``; one whose other operand reads the inputs directly (no
parameter on its way) is marked ``input``.

Nothing is executed: the jaxpr comes from ``jax.make_jaxpr``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.extend import core as jcore

LeafAxes = tuple[int, ...] | None  # The leaf axes one axis of a value holds (None: none).

# Operations that combine values entry by entry (shapes equal, or rank-0 operands).
ELEMENTWISE = frozenset(
  """add sub mul div rem pow max min neg sign floor ceil round is_finite exp exp2 log log1p
  expm1 tanh logistic sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh sqrt rsqrt
  cbrt abs square integer_pow erf erfc erf_inv lgamma digamma select_n clamp convert_element_type
  copy copy_p reduce_precision stop_gradient nextafter and or not xor eq ne lt le gt ge real imag
  conj population_count shift_left shift_right_logical shift_right_arithmetic""".split()
)
MULTIPLICATIVE = frozenset({"mul", "div"})
PRODUCTS = frozenset({"dot_general", "conv_general_dilated", "ragged_dot_general"})
# One operand, the same axes out as in.
SAME_AXES = frozenset(
  """sharding_constraint reshard mesh_cast rev cumsum cumprod cummax cummin cumlogsumexp pad
  copy_p copy""".split()
)
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and"})


@dataclasses.dataclass(frozen=True)
class Flow:
  """How a parameter-only value holds one leaf: the leaf axes of each of its axes."""

  leaf: int
  axes: tuple[LeafAxes, ...]
  stack: frozenset = frozenset()  # Leaf axes sliced away (scan xs, w[i]).
  partial: frozenset = frozenset()  # Leaf axes split by a reshape: not followed further.
  sliced: frozenset = frozenset()  # Leaf axes cut to a range of entries (table[:n]).


@dataclasses.dataclass(frozen=True)
class Info:
  """What a jaxpr variable depends on."""

  flows: tuple[Flow, ...] = ()  # Non-empty only for values computed from parameters alone.
  acts: tuple[Flow, ...] = ()  # Activation axes that are a leaf's fan-out axes (after a product).
  data: bool = False  # Depends on the inputs.
  float_data: bool = False  # Depends on floating-point inputs.
  params: bool = False  # Depends on a parameter.


@dataclasses.dataclass(frozen=True)
class Use:
  """One operation consuming a parameter leaf, in the leaf's own axes."""

  leaf: int
  kind: str  # "dot", "conv", "embed" (gather or one-hot product) or "elementwise"
  primitive: str
  fan_in: tuple[int, ...] = ()
  fan_out: tuple[int, ...] = ()
  stack: tuple[int, ...] = ()
  spatial: tuple[int, ...] = ()
  blocks: int = 1  # The fan-out axis is cut into this many parts after the product.
  split_stack: tuple[int, ...] = ()  # Fan-out axes indexed one entry at a time after it.
  head: bool = False
  input: bool = False
  multiplicative: bool = False
  unresolved: tuple[int, ...] = ()  # Leaf axes the walk could not follow to this use.

  def describe(self) -> str:
    if self.kind == "dot":
      return f"{self.primitive} (contracts {_axes_text(self.fan_in)})"
    if self.kind == "conv":
      return f"{self.primitive} (taps {_axes_text(self.spatial)}; in {_axes_text(self.fan_in)})"
    if self.kind == "embed":
      return f"{self.primitive} (indexes {_axes_text(self.fan_in)})"
    return self.primitive


def _axes_text(axes) -> str:
  return ", ".join(map(str, axes))


def _subjaxprs(eqn) -> list[Any]:
  """The jaxprs in an equation's parameters (ClosedJaxpr or Jaxpr), in order."""
  out = []
  for value in eqn.params.values():
    values = value if isinstance(value, tuple | list) else (value,)
    out += [v for v in values if isinstance(v, jcore.ClosedJaxpr | jcore.Jaxpr)]
  return out


def _open(j) -> jcore.Jaxpr:
  return j.jaxpr if isinstance(j, jcore.ClosedJaxpr) else j


def _call_body(eqn) -> jcore.Jaxpr | None:
  """The inner jaxpr of a call-like equation (jit, remat, custom_jvp/vjp): same arity."""
  if eqn.primitive.name in ("scan", "while", "cond"):
    return None
  for j in _subjaxprs(eqn):
    j = _open(j)
    if len(j.invars) == len(eqn.invars) and len(j.outvars) == len(eqn.outvars):
      return j
  return None


class _Walker:
  def __init__(self, n_leaves: int):
    self.uses: list[Use] = []
    self.n_leaves = n_leaves

  # -- backward: which values reach the output through no product, which feed a product ----

  def backward(self, jaxpr: jcore.Jaxpr, out_reach, out_feeds):
    reach: dict = {}
    feeds: dict = {}
    for v, r, f in zip(jaxpr.outvars, out_reach, out_feeds, strict=True):
      if isinstance(v, jcore.Var):
        reach[v] = reach.get(v, False) or r
        feeds[v] = feeds.get(v, False) or f
    for eqn in reversed(jaxpr.eqns):
      o_reach = [reach.get(v, False) for v in eqn.outvars]
      o_feeds = [feeds.get(v, False) for v in eqn.outvars]
      name = eqn.primitive.name
      if name in PRODUCTS:
        i_reach = [False] * len(eqn.invars)
        i_feeds = [True] * len(eqn.invars)
      elif (body := _call_body(eqn)) is not None:
        r, f = self.backward(body, o_reach, o_feeds)
        i_reach = [r.get(v, False) for v in body.invars]
        i_feeds = [f.get(v, False) for v in body.invars]
      elif _subjaxprs(eqn):  # scan, while, cond: every inner jaxpr, conservatively.
        any_r, any_f = any(o_reach), any(o_feeds)
        i_reach, i_feeds = [any_r] * len(eqn.invars), [any_f] * len(eqn.invars)
        for j in _subjaxprs(eqn):
          j = _open(j)
          r, f = self.backward(j, [any_r] * len(j.outvars), [any_f] * len(j.outvars))
          if any(f.get(v, False) for v in j.invars):
            i_feeds = [True] * len(eqn.invars)
      else:
        any_r, any_f = any(o_reach), any(o_feeds)
        i_reach, i_feeds = [any_r] * len(eqn.invars), [any_f] * len(eqn.invars)
      for v, r, f in zip(eqn.invars, i_reach, i_feeds, strict=True):
        if isinstance(v, jcore.Var):
          reach[v] = reach.get(v, False) or r
          feeds[v] = feeds.get(v, False) or f
    return reach, feeds

  # -- forward ------------------------------------------------------------------------------

  def run(self, jaxpr: jcore.Jaxpr, in_infos: Sequence[Info], out_reach, out_feeds) -> list[Info]:
    reach, feeds = self.backward(jaxpr, out_reach, out_feeds)
    env: dict = {}
    consumers: dict = {}
    for eqn in jaxpr.eqns:
      for v in eqn.invars:
        if isinstance(v, jcore.Var):
          consumers.setdefault(v, []).append(eqn)
    for v, info in zip(jaxpr.invars, in_infos, strict=True):
      env[v] = info
    for v in jaxpr.constvars:
      env[v] = Info()

    def read(v) -> Info:
      return env.get(v, Info()) if isinstance(v, jcore.Var) else Info()

    for eqn in jaxpr.eqns:
      ins = [read(v) for v in eqn.invars]
      head = any(reach.get(v, False) and not feeds.get(v, False) for v in eqn.outvars)
      outs = self.equation(eqn, ins, head, reach, feeds, consumers)
      for v, info in zip(eqn.outvars, outs, strict=True):
        env[v] = info
    return [read(v) for v in jaxpr.outvars]

  def equation(self, eqn, ins: list[Info], head: bool, reach, feeds, consumers) -> list[Info]:
    name = eqn.primitive.name
    merged = Info(
      data=any(i.data for i in ins),
      float_data=any(i.float_data for i in ins),
      params=any(i.params for i in ins),
    )
    if name == "scan":
      return self.scan(eqn, ins, reach, feeds)
    if name == "while":
      return self.while_loop(eqn, ins)
    if name == "cond":
      return self.cond(eqn, ins, reach, feeds)
    if (body := _call_body(eqn)) is not None:
      o_reach = [reach.get(v, False) for v in eqn.outvars]
      o_feeds = [feeds.get(v, False) for v in eqn.outvars]
      return self.run(body, ins, o_reach, o_feeds)
    if name in PRODUCTS:
      return [self.product(eqn, ins, head, merged, consumers)]
    if name == "gather":
      return [self.gather(eqn, ins, merged)]
    acts = map_axes(eqn, [i.acts for i in ins], stack=False)
    if not any(i.flows for i in ins):
      return [dataclasses.replace(merged, acts=a) for a in acts]
    if merged.data:  # A parameter-only value meets the inputs: an elementwise use.
      self.consume(ins, name, multiplicative=name in MULTIPLICATIVE)
      out = Info(data=True, float_data=merged.float_data, params=True)
      return [dataclasses.replace(out, acts=a) for a in acts]
    flows = map_axes(eqn, [i.flows for i in ins], stack=True)
    return [dataclasses.replace(merged, flows=f, acts=a) for f, a in zip(flows, acts, strict=True)]

  def consume(self, ins: list[Info], primitive: str, multiplicative: bool = False) -> None:
    for info in ins:
      for flow in info.flows:
        present = {a for axes in flow.axes if axes for a in axes}
        rows = sorted(flow.sliced & present)
        if rows and not multiplicative:  # table[:n] + x: rows looked up by position.
          rest = [i for i, axes in enumerate(flow.axes) if axes and not set(axes) & set(rows)]
          looked = [i for i, axes in enumerate(flow.axes) if axes and set(axes) & set(rows)]
          use = _use(flow, "embed", f"slice + {primitive}", fan_in=looked, fan_out=rest)
          self.uses.append(use)
          continue
        self.uses.append(_use(flow, "elementwise", primitive, multiplicative=multiplicative))

  # -- products -----------------------------------------------------------------------------

  def product(self, eqn, ins: list[Info], head: bool, merged: Info, consumers) -> Info:
    name = eqn.primitive.name
    out = Info(data=merged.data, float_data=merged.float_data, params=True)
    lhs, rhs = ins[0], ins[1]
    if not lhs.flows and not rhs.flows:
      return merged
    if name == "conv_general_dilated":
      if rhs.flows:
        rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
        for flow in rhs.flows:
          self.uses.append(
            _use(
              flow, "conv", name, fan_in=[rhs_spec[1]], fan_out=[rhs_spec[0]],
              spatial=list(rhs_spec[2:]), input=_reads_inputs(lhs), head=head,
            )
          )  # fmt: skip
      if lhs.flows:
        self.consume([lhs], name)
      return out
    if name == "ragged_dot_general":
      dn = eqn.params["ragged_dot_dimension_numbers"]
      (lc, rc), (lb, rb) = dn.dot_dimension_numbers
      groups = tuple(dn.rhs_group_dimensions)
      if rhs.flows:
        ndim = len(eqn.invars[1].aval.shape)
        free = [a for a in range(ndim) if a not in rc and a not in rb and a not in groups]
        for flow in rhs.flows:
          self.uses.append(
            _use(flow, "dot", name, fan_in=rc, fan_out=free, stack=list(rb) + list(groups),
                 input=_reads_inputs(lhs), head=head)
          )  # fmt: skip
      if lhs.flows:
        self.consume([lhs], name)
      return out
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    shapes = [tuple(v.aval.shape) for v in eqn.invars[:2]]
    sides = ((lhs, rhs, lc, lb, 0), (rhs, lhs, rc, rb, 1))
    if lhs.flows and rhs.flows:  # A product of parameters: a transform, roles unknown.
      for flow in lhs.flows + rhs.flows:
        self.uses.append(Use(flow.leaf, "elementwise", name + " (of two parameters)"))
      return out
    # Where each operand's axes land in the output: batch axes, lhs free, rhs free.
    frees = [
      [a for a in range(len(shapes[0])) if a not in lc and a not in lb],
      [a for a in range(len(shapes[1])) if a not in rc and a not in rb],
    ]
    positions = [
      {a: i for i, a in enumerate(lb)} | {a: len(lb) + i for i, a in enumerate(frees[0])},
      {a: i for i, a in enumerate(rb)}
      | {a: len(lb) + len(frees[0]) + i for i, a in enumerate(frees[1])},
    ]
    out_ndim = len(eqn.outvars[0].aval.shape)

    def moved(flow: Flow, side: int) -> Flow:
      axes: list = [None] * out_ndim
      for a, pos in positions[side].items():
        axes[pos] = flow.axes[a]
      return Flow(flow.leaf, tuple(axes))

    acts = [moved(f, side) for side, info in ((0, lhs), (1, rhs)) for f in info.acts]
    for info, other, contract, batch, side in sides:
      if not info.flows:
        continue
      free = frees[side]
      # A product with a value built from integer inputs alone (a one-hot matrix) is a lookup.
      onehot = not other.params and not other.float_data
      for flow in info.flows:
        if not other.data:  # Parameters and constants only: a transform (below).
          continue
        if onehot:
          self.uses.append(_use(flow, "embed", name, fan_in=contract, fan_out=free, stack=batch))
          continue
        blocks, split_stack = self.splits(eqn, side, free, flow, consumers, shapes)
        use = _use(
          flow, "dot", name, fan_in=contract, fan_out=free, stack=batch, head=head,
          input=_reads_inputs(other),
        )  # fmt: skip
        self.uses.append(dataclasses.replace(use, blocks=blocks, split_stack=split_stack))
        acts.append(moved(flow, side))
        # An activation axis batched against this parameter's stack axis (an expert's
        # hidden units meeting the expert's next kernel) is a stack axis of its own leaf.
        other_batch = rb if side == 0 else lb
        for mine, theirs in zip(batch, other_batch, strict=True):
          del mine
          for act in other.acts:
            held = act.axes[theirs]
            if held is not None:
              self.uses.append(Use(act.leaf, "stack_hint", name, stack=tuple(held)))
    if not merged.data:  # A product of parameters and constants: the leaf goes on, unknown.
      flows = [
        Flow(f.leaf, (None,) * out_ndim, f.stack, f.partial) for i in (lhs, rhs) for f in i.flows
      ]
      return dataclasses.replace(merged, flows=_dedupe(flows))
    return dataclasses.replace(out, acts=_dedupe(acts))

  def splits(self, eqn, side: int, free, flow: Flow, consumers, shapes) -> tuple[int, tuple]:
    """Whether the product's output is cut along one of the leaf's fan-out axes right after
    it (``jnp.split``, slices, or indexing one entry at a time): ``(blocks, stack axes)``."""
    out = eqn.outvars[0]
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    nbatch = len(lb)
    lfree = [a for a in range(len(shapes[0])) if a not in lc and a not in lb]
    offset = nbatch + (len(lfree) if side == 1 else 0)
    fan_out_leaf = sorted(a for i in free for a in (flow.axes[i] or ()))
    for pos, axis in enumerate(free):
      leaf_axes = flow.axes[axis]
      if leaf_axes is None or len(leaf_axes) != 1:
        continue
      out_axis = offset + pos
      size = out.aval.shape[out_axis]
      pieces = _cut(out, out_axis, consumers)
      if pieces is None or pieces <= 1:
        continue
      (a,) = leaf_axes
      if pieces == size:
        return 1, (a,)
      if fan_out_leaf and a == fan_out_leaf[0]:
        return pieces, ()
    return 1, ()

  # -- gather, scan, while, cond ----------------------------------------------------------------

  def gather(self, eqn, ins: list[Info], merged: Info) -> Info:
    operand, indices = ins[0], ins[1]
    if not operand.flows:
      if indices.flows:
        self.consume([indices], "gather")
      return merged
    dn = eqn.params["dimension_numbers"]
    idx_shape = tuple(eqn.invars[1].aval.shape)
    count = math.prod(idx_shape[:-1]) if idx_shape else 1
    ndim = len(eqn.invars[0].aval.shape)
    indexed = tuple(dn.start_index_map)
    if count == 1 and not indices.data:  # One slice (w[i] in a loop): a stack axis, as a scan.
      collapsed = tuple(dn.collapsed_slice_dims)
      flows = [_drop(f, collapsed) for f in operand.flows]
      return dataclasses.replace(merged, flows=_dedupe([f for f in flows if f is not None]))
    rest = [a for a in range(ndim) if a not in indexed and a not in dn.operand_batching_dims]
    for flow in operand.flows:
      self.uses.append(
        _use(flow, "embed", "gather", fan_in=indexed, fan_out=rest, stack=dn.operand_batching_dims)
      )
    return Info(data=merged.data, float_data=merged.float_data, params=True)

  def scan(self, eqn, ins: list[Info], reach, feeds) -> list[Info]:
    p = eqn.params
    body = _open(p["jaxpr"])
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    consts, carry = ins[:n_consts], ins[n_consts : n_consts + n_carry]
    xs = ins[n_consts + n_carry :]
    sliced = []
    for info in xs:
      flows = [_drop(f, (0,)) for f in info.flows]
      acts = [_drop(f, (0,), stack=False) for f in info.acts]
      sliced.append(dataclasses.replace(info, flows=_dedupe(flows), acts=_dedupe(acts)))
    o_reach = [reach.get(v, False) for v in eqn.outvars]
    o_feeds = [feeds.get(v, False) for v in eqn.outvars]
    outs = self.run(body, consts + carry + sliced, o_reach, o_feeds)
    carry_out, ys = outs[:n_carry], outs[n_carry:]
    lead = lambda fs: tuple(dataclasses.replace(f, axes=(None,) + f.axes) for f in fs)  # noqa: E731
    stacked = [dataclasses.replace(y, flows=lead(y.flows), acts=lead(y.acts)) for y in ys]
    return [_union(a, b) for a, b in zip(carry, carry_out, strict=True)] + stacked

  def while_loop(self, eqn, ins: list[Info]) -> list[Info]:
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_consts, body_consts, carry = ins[:nc], ins[nc : nc + nb], ins[nc + nb :]
    body = _open(p["body_jaxpr"])
    cond = _open(p["cond_jaxpr"])
    self.run(cond, cond_consts + carry, [False] * len(cond.outvars), [False] * len(cond.outvars))
    n = len(carry)
    outs = self.run(body, body_consts + carry, [True] * n, [True] * n)
    return [_union(a, b) for a, b in zip(carry, outs, strict=True)]

  def cond(self, eqn, ins: list[Info], reach, feeds) -> list[Info]:
    operands = ins[1:]
    o_reach = [reach.get(v, False) for v in eqn.outvars]
    o_feeds = [feeds.get(v, False) for v in eqn.outvars]
    results = [self.run(_open(b), operands, o_reach, o_feeds) for b in eqn.params["branches"]]
    index = ins[0]
    outs = []
    for infos in zip(*results, strict=True):
      info = infos[0]
      for other in infos[1:]:
        info = _union(info, other)
      outs.append(_union(info, dataclasses.replace(index, flows=(), acts=())))
    return outs


# -- helpers ------------------------------------------------------------------------------------


def _reads_inputs(other: Info) -> bool:
  """The other operand of a product reads the inputs with no parameter on its way."""
  return other.data and not other.params


def map_axes(eqn, per_input: list[tuple[Flow, ...]], stack: bool) -> list[tuple[Flow, ...]]:
  """The flows of each output of ``eqn`` from those of its inputs, by how it moves axes.

  ``stack``: an axis indexed away (squeeze after a slice) makes its leaf axes stack axes
  (parameter flows); for activation flows the axis is just dropped.
  """
  name = eqn.primitive.name
  out_ndims = [len(getattr(v.aval, "shape", ())) for v in eqn.outvars]
  shape_in = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
  p = eqn.params
  if not any(per_input):
    return [()] * len(eqn.outvars)

  def each(fn) -> list[tuple[Flow, ...]]:
    outs = []
    for k in range(len(eqn.outvars)):
      flows = []
      for j, fs in enumerate(per_input):
        for flow in fs:
          new = fn(flow, j, k)
          if new is not None and (stack or any(a is not None for a in new.axes)):
            flows.append(new)
      outs.append(_dedupe(flows))
    return outs

  if name in ELEMENTWISE or name in SAME_AXES or name in ("split", "optimization_barrier"):

    def same(flow, j, k):
      if name == "optimization_barrier" and j != k:
        return None
      if len(flow.axes) != out_ndims[k]:  # A rank-0 operand broadcast: it holds no axis.
        return None
      return flow

    return each(same)
  if name == "transpose":
    perm = p["permutation"]
    return each(lambda f, j, k: dataclasses.replace(f, axes=tuple(f.axes[i] for i in perm)))
  if name == "squeeze":
    dims = tuple(d % len(shape_in[0]) for d in p["dimensions"])
    return each(lambda f, j, k: _drop(f, dims, stack=stack))
  if name == "broadcast_in_dim":
    shape_out = tuple(p["shape"])

    def bcast(f, j, k):
      if j != 0:
        return None
      axes: list = [None] * len(shape_out)
      for i, d in enumerate(p["broadcast_dimensions"]):
        axes[d] = f.axes[i] if shape_in[0][i] == shape_out[d] else None
      return dataclasses.replace(f, axes=tuple(axes))

    return each(bcast)
  if name == "reshape":
    shape_out = tuple(p["new_sizes"])
    return each(lambda f, j, k: _reshape(f, shape_in[0], shape_out, stack) if j == 0 else None)
  if name in ("slice", "dynamic_slice"):
    shape_out = tuple(eqn.outvars[0].aval.shape)
    cut = [i for i, (a, b) in enumerate(zip(shape_in[0], shape_out, strict=True)) if b < a]

    def sliced(f, j, k):
      if j != 0:
        return None
      rows = {a for i in cut if f.axes[i] for a in f.axes[i]}
      return dataclasses.replace(f, sliced=f.sliced | frozenset(rows)) if stack else f

    return each(sliced)
  if name == "concatenate":
    return each(lambda f, j, k: f)
  if name in REDUCTIONS or name in ("argmax", "argmin"):
    dims = tuple(p["axes"])
    return each(lambda f, j, k: _drop(f, dims, stack=False))
  if not stack:  # An activation through anything else: its axes are not followed.
    return [()] * len(eqn.outvars)
  # A parameter-only value through anything else: the leaf goes on, its axes unknown.
  return each(lambda f, j, k: Flow(f.leaf, (None,) * out_ndims[k], f.stack, f.partial))


def _use(flow: Flow, kind, primitive, *, fan_in=(), fan_out=(), stack=(), spatial=(), **kw) -> Use:
  """A use with the value's axes translated to the leaf's axes."""
  unresolved: set[int] = set(flow.partial)

  def leaf(axes):
    out = []
    for a in axes:
      held = flow.axes[a]
      if held is not None:
        out += held
    unresolved.update(a for a in out if a in flow.partial)
    return tuple(sorted(out))

  return Use(
    flow.leaf,
    kind,
    primitive,
    fan_in=leaf(fan_in),
    fan_out=leaf(fan_out),
    stack=tuple(sorted(set(leaf(stack)) | set(flow.stack))),
    spatial=tuple(leaf(spatial)) if spatial else (),
    unresolved=tuple(sorted(unresolved)),
    **kw,
  )


def _drop(flow: Flow, dims, stack: bool = True) -> Flow | None:
  """The flow with the value's axes ``dims`` removed; their leaf axes become stack axes
  (an axis indexed away) unless ``stack`` is False (an axis reduced away)."""
  dims = set(dims)
  removed = [a for d in dims for a in (flow.axes[d] or ())]
  axes = tuple(x for i, x in enumerate(flow.axes) if i not in dims)
  if stack:
    return dataclasses.replace(flow, axes=axes, stack=flow.stack | frozenset(removed))
  return dataclasses.replace(flow, axes=axes, partial=flow.partial | frozenset(removed))


def _reshape(flow: Flow, old: tuple, new: tuple, stack_dropped: bool = True) -> Flow:
  """The flow through a reshape: groups of axes with equal sizes map to each other; a leaf
  axis merged with others stays whole, one split across several axes is ``partial``."""
  old_axes = [i for i, s in enumerate(old) if s != 1]
  new_axes = [j for j, s in enumerate(new) if s != 1]
  out: list = [None] * len(new)
  stack = set(flow.stack)
  partial = set(flow.partial)
  for i, s in enumerate(old):
    if s == 1 and flow.axes[i] and stack_dropped:
      stack.update(flow.axes[i])  # A size-1 axis dropped: indexed away.
  i = j = 0
  while i < len(old_axes) and j < len(new_axes):
    group_old, group_new = [old_axes[i]], [new_axes[j]]
    po, pn = old[old_axes[i]], new[new_axes[j]]
    i, j = i + 1, j + 1
    while po != pn:
      if po < pn:
        group_old.append(old_axes[i])
        po *= old[old_axes[i]]
        i += 1
      else:
        group_new.append(new_axes[j])
        pn *= new[new_axes[j]]
        j += 1
    held = [a for k in group_old for a in (flow.axes[k] or ())]
    if len(group_new) == 1:
      out[group_new[0]] = tuple(held) if held else None
    else:
      partial.update(held)
      for k in group_new:
        out[k] = tuple(held) if held else None
  return Flow(flow.leaf, tuple(out), frozenset(stack), frozenset(partial))


def _cut(var, axis: int, consumers) -> int | None:
  """Into how many equal pieces every consumer of ``var`` cuts ``axis`` (None: not cut)."""
  eqns = consumers.get(var, [])
  if not eqns:
    return None
  size = var.aval.shape[axis]
  if all(e.primitive.name == "split" and e.params["axis"] == axis for e in eqns):
    counts = {len(e.params["sizes"]) for e in eqns}
    sizes = {int(s) for e in eqns for s in e.params["sizes"]}
    return counts.pop() if len(counts) == 1 and len(sizes) == 1 else None
  starts = set()
  for e in eqns:
    if e.primitive.name == "transpose":
      perm = e.params["permutation"]
      inner = _cut(e.outvars[0], perm.index(axis), consumers)
      if inner is None:
        return None
      starts.add(("t", inner))
      continue
    if e.primitive.name != "slice" or e.params["strides"] not in (None, (1,) * len(var.aval.shape)):
      return None
    lo, hi = e.params["start_indices"], e.params["limit_indices"]
    full = all(lo[k] == 0 and hi[k] == var.aval.shape[k] for k in range(len(lo)) if k != axis)
    if not full:
      return None
    starts.add((lo[axis], hi[axis]))
  if any(s[0] == "t" for s in starts):
    return starts.pop()[1] if len(starts) == 1 else None
  widths = {hi - lo for lo, hi in starts}
  if len(widths) != 1:
    return None
  (width,) = widths
  pieces = size // width
  return pieces if pieces * width == size and len(starts) == pieces else None


def _dedupe(flows) -> tuple[Flow, ...]:
  """One flow per leaf: the one that keeps the most axes."""
  best: dict[int, Flow] = {}
  for f in flows:
    kept = sum(a is not None for a in f.axes)
    if f.leaf not in best or kept > sum(a is not None for a in best[f.leaf].axes):
      best[f.leaf] = f
  return tuple(best.values())


def _union(a: Info, b: Info) -> Info:
  return Info(
    flows=_dedupe(a.flows + b.flows),
    acts=_dedupe(a.acts + b.acts),
    data=a.data or b.data,
    float_data=a.float_data or b.float_data,
    params=a.params or b.params,
  )


def parameter_uses(closed: jcore.ClosedJaxpr, n_params: int, inputs: Sequence[Any]) -> list[Use]:
  """Every use of the first ``n_params`` inputs of ``closed`` (the parameter leaves).

  ``inputs`` describes the other inputs, in order: a dtype for an input of the
  function (data), ``None`` for a value that is neither data nor a parameter
  (non-parameter model state: batch statistics, RNG keys).
  """
  jaxpr = closed.jaxpr
  infos = []
  for k, v in enumerate(jaxpr.invars):
    if k < n_params:
      ndim = len(v.aval.shape)
      infos.append(Info(flows=(Flow(k, tuple((a,) for a in range(ndim))),)))
      continue
    dtype = inputs[k - n_params]
    if dtype is None:
      infos.append(Info())
      continue
    is_float = np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating)
    infos.append(Info(data=True, float_data=bool(is_float)))
  walker = _Walker(n_params)
  n = len(jaxpr.outvars)
  walker.run(jaxpr, infos, [True] * n, [False] * n)
  return walker.uses
