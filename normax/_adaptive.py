"""Learning-rate-free steps: a Prodigy-style estimate of the distance to travel, in a norm."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import l2_norm, where_nonzero
from normax._checks import COUNT, NONNEGATIVE, POSITIVE, UNIT, Range, check_args, renamed
from normax._leafwise import (
  cast_scalar,
  evaluate,
  resolve_norms,
  resolve_scalars,
)
from normax._lmo import scale_by_lmo
from normax._matrix_view import matrix_views, with_matrix_view
from normax._momentum import momentum
from normax._muon import muon_orthogonalizer, muon_routing
from normax._orthogonalizer import Orthogonalizer
from normax._roles import Roles
from normax._scion import check_specs, scion_branches
from normax._spec import LayerSpec, checked_labels, leaf_views, spec_views
from normax._spectral import Spectral

_F32 = jnp.float32


class AdaptiveStepState(NamedTuple):
  """State of :func:`adaptive_step`.

  Attributes:
    count: Step count.
    distance: The estimate ``d`` (one scalar, or one per leaf for
      ``scope="leaf"``), float32.
    numerator: ``r = Σ_k β₃^{t-k} w_k ⟨g_k, x₀ - x_k⟩`` (like ``distance``).
    grad_norm: The ℓ2 norm of the last gradient the estimate took in (like
      ``distance``; 0 before the first step), after its cap.
    grad_sum: ``s = Σ_k β₃^{t-k} w_k g_k`` per leaf.
    params0: A copy of the initial parameters ``x₀`` (its own buffers, so
      the parameters can be donated).
    inner: The wrapped transform's state.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.adaptive_step(normax.scale_by_lmo("sign"), "sign")
    >>> tx.init({"w": jnp.ones((2, 2))}).distance
    Array(1.e-06, dtype=float32)
  """

  count: jax.Array
  distance: Any
  numerator: Any
  grad_norm: Any
  grad_sum: optax.Updates
  params0: optax.Params
  inner: optax.OptState


def adaptive_step(
  inner: optax.GradientTransformation,
  norms: Any,
  *,
  learning_rate: float | optax.Schedule = 1.0,
  scope: Literal["global", "leaf"] = "global",
  masses: Any = None,
  beta3: float = 0.999**0.5,
  d0: float = 1e-6,
  relative_d0: float = 0.0,
  coef: float = 1.0,
  safeguard_warmup: bool = False,
  growth: float = 10.0,
  views: Any = None,
) -> optax.GradientTransformation:
  r"""Multiplies ``inner``'s direction by a self-estimated step size (D-Adaptation / Prodigy).

  With raw gradients ``g_k``, parameters ``x_k``, schedule ``λ_k``
  (``learning_rate``, 1 by default) and weights ``w_k = λ_k d_k² / d₀``, the
  state accumulates

  .. math::
    s_t = β_3 s_{t-1} + w_t g_t, \qquad
    r_t = β_3 r_{t-1} + w_t ⟨g_t, x_0 - x_t⟩, \qquad
    d_{t+1} = \max\Big(d_t,\ c\, \frac{r_t}{\sum_l m_l \|s_{t,l}\|^†_l}\Big),

  and the output is ``λ_t d_t · inner(g_t)``. ``‖·‖†_l`` is the dual norm of
  leaf ``l``'s :class:`normax.Norm` (every tensor of a stacked leaf counted),
  ``m_l`` its mass. ``inner`` should emit a direction of norm ``m_l`` in
  each layer (e.g. ``scale_by_lmo`` then ``scale_by_radius(m_l)``).

  **What is estimated, in which norm.** ``d`` estimates the distance
  ``D = ‖x₀ - x*‖`` from the start to a minimizer in the modular norm
  ``‖x‖ = max_l ‖x_l‖_l / m_l`` (``scope="global"``: one step for the whole
  tree) or, with ``scope="leaf"``, ``D_l = ‖x₀,l - x*_l‖_l / m_l`` in each
  leaf's own norm (one step per leaf). The step ``λ d m_l dualize_l`` then
  travels ``λ d`` in that norm. **Guarantee inherited.** For a convex loss,
  ``⟨g_k, x_k - x*⟩ ≥ 0`` and Hölder's inequality in the norm give
  ``r_t ≤ ⟨s_t, x₀ - x*⟩ ≤ (Σ_l m_l‖s_{t,l}‖†) · D``, so ``d_t ≤ D``
  (times ``c``) at every step: the estimate never overshoots the true
  distance — the lower bound on which the D-Adaptation and Prodigy rates
  rest. With the elementwise ℓ∞ norm (``normax.Sign(normalized=False)``,
  ``scope="global"``, unit masses) around ``scale_by_lmo`` of the same norm
  this is exactly ``optax.contrib.prodigy`` with ``betas=(0, 0)`` and
  ``eps=0`` (Prodigy with its moving averages off is sign descent,
  Bernstein & Newhouse Sec. 3.1), and it inherits Prodigy's guarantee; for
  other norms only the lower bound is claimed.

  The estimate uses the raw incoming gradients; ``inner`` sees them too (put
  the momentum inside ``inner``). Per-label estimates come from placing the
  transform inside each ``optax.partition`` branch with ``scope="global"``.

  **The start.** ``d₀ = max(d0, relative_d0 · ‖x₀‖)``, with ``‖x₀‖`` the
  initial parameters' size in the norm ``d`` is measured in (the modular
  norm above, or each leaf's for ``scope="leaf"``): a start relative to the
  weights' scale instead of Prodigy's fixed ``1e-6`` (``relative_d0=0``, the
  default here), which spends many steps growing. It must stay an
  under-estimate: ``d`` only grows.

  **Robustness.** A step whose contributions to ``r`` or ``s`` are not
  finite (a NaN or inf gradient) leaves the estimate as it was, and a
  gradient enters the estimate with its ℓ2 norm capped at ``growth`` times
  the previous one's, so that one outlier (a gradient ×1e6) cannot swamp
  ``s`` and stall ``d`` for good; ``inner`` sees the raw gradient. The
  update itself is still NaN after a NaN gradient (failing loudly); wrap the
  optimizer in ``optax.apply_if_finite`` to skip such steps altogether.

  Args:
    inner: The direction, e.g. ``optax.chain(normax.momentum(0.9),
      normax.scale_by_lmo(norms))``; gradient-aligned.
    norms: Norm per leaf, as in :func:`normax.scale_by_lmo` (a norm, a name,
      a pytree or a callable on the updates); its dual norm measures ``s``.
    learning_rate: ``λ``, a multiplier of ``d`` (float or schedule; e.g. a
      cosine decay from 1). Not a step size to tune.
    scope: ``"global"`` (one ``d`` under the modular norm) or ``"leaf"``.
    masses: ``m_l``: ``None`` (all 1), a float, a pytree of floats/schedules
      (or a prefix), or a callable on the updates returning such a pytree.
    beta3: Decay of ``s`` and ``r`` (Prodigy's ``β₃``; 1 is D-Adaptation's
      plain sums).
    d0: Initial (under-)estimate, and its floor with ``relative_d0``.
    relative_d0: The start as a fraction of ``‖x₀‖`` (0: ``d0`` alone).
    coef: ``c``, multiplies the estimate (Prodigy's ``d_coef``).
    safeguard_warmup: Leave ``λ`` out of the weights of ``s`` (Prodigy's
      option for warm-up schedules).
    growth: The cap on a gradient's ℓ2 norm in the estimate, as a multiple
      of the previous gradient's (``inf``: no cap).
    views: The :class:`normax.MatrixView` of each leaf, as for
      :func:`normax.scale_by_lmo`: the norms measure each leaf in it (an
      attention kernel ``(d, heads, head_dim)`` as one ``d × heads·head_dim``
      matrix); ``None``: every leaf in its own layout.

  Returns:
    An ``optax.GradientTransformation`` (needs ``params`` in ``update``).

  Examples:
    >>> import jax.numpy as jnp, optax, normax
    >>> tx = optax.chain(normax.adaptive_step(normax.scale_by_lmo("sign"), "sign"),
    ...                  optax.scale(-1.0))
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> u, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
    >>> u["w"][0]  # -d₀ · sign(g) / d_in on the first step
    Array([-5.e-07, -5.e-07], dtype=float32)

  References:
    Defazio & Mishchenko, *Learning-Rate-Free Learning by D-Adaptation*,
    2023; Mishchenko & Defazio, *Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner*, 2023, Alg. 4; Bernstein & Newhouse, *Old
    Optimizer, New Norm*, 2024, Sec. 3.1 and Prop. 7 (modular norm).
  """
  if scope not in ("global", "leaf"):
    raise ValueError(f"scope must be 'global' or 'leaf', got {scope!r}.")
  _check_estimate("normax.adaptive_step", learning_rate, beta3, d0, relative_d0, coef, growth)

  def in_views(norms_, tree):
    """Each leaf's norm and a function putting a leaf of ``tree``'s shape in its view."""
    found = None if views is None else matrix_views(tree, views)
    resolved = resolve_norms(norms_, tree, found)
    found = found or [None] * len(resolved)
    return resolved, [(lambda x: x) if v is None else v.to for v in found]

  def scalars(params):
    if scope == "global":
      return jnp.zeros([], _F32)
    return jax.tree.map(lambda _: jnp.zeros([], _F32), params)

  def start(params):
    """``max(d0, relative_d0 · ‖x₀‖)``, per scope."""
    if relative_d0 == 0:
      return jax.tree.map(lambda z: z + d0, scalars(params))
    flat, treedef = jax.tree.flatten(params)
    ms = resolve_scalars(
      1.0 if masses is None else (masses(params) if callable(masses) else masses),
      params,
      jnp.zeros([], jnp.int32),
      "mass",
    )
    resolved, to = in_views(norms, params)
    sizes = [
      jnp.max(n.norm(view(p))).astype(_F32) / cast_scalar(1.0 if m is None else m, _F32)
      for n, view, p, m in zip(resolved, to, flat, ms, strict=True)
    ]
    first = lambda size: jnp.maximum(cast_scalar(d0, _F32), relative_d0 * size)
    if scope == "global":
      return first(jnp.max(jnp.stack(sizes)) if sizes else jnp.zeros([], _F32))
    return treedef.unflatten([first(size) for size in sizes])

  def init_fn(params):
    return AdaptiveStepState(
      count=jnp.zeros([], jnp.int32),
      distance=start(params),
      numerator=scalars(params),
      grad_norm=scalars(params),
      grad_sum=optax.tree.zeros_like(params, dtype=_F32),
      params0=jax.tree.map(lambda p: jnp.array(p, copy=True), params),
      inner=inner.init(params),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.adaptive_step needs the parameters (its estimate uses x₀ - x):"
        " call tx.update(grads, state, params)."
      )
    flat, treedef = jax.tree.flatten(updates)
    resolved, to = in_views(norms, updates)
    for n, path in zip(resolved, jax.tree_util.tree_flatten_with_path(updates)[0], strict=True):
      if n is None:
        raise ValueError(
          f"normax.adaptive_step has no norm for the leaf at {jax.tree_util.keystr(path[0])};"
          " every leaf needs one to measure the distance (give it a norm, or"
          " leave it out with optax.partition)."
        )
    ms = resolve_scalars(
      1.0 if masses is None else (masses(updates) if callable(masses) else masses),
      updates,
      state.count,
      "mass",
    )
    lam = cast_scalar(evaluate(learning_rate, state.count), _F32)
    ps = treedef.flatten_up_to(params)
    p0s = treedef.flatten_up_to(state.params0)
    sums = treedef.flatten_up_to(state.grad_sum)
    ds = (
      [state.distance] * len(flat) if scope == "global" else treedef.flatten_up_to(state.distance)
    )
    per_leaf = lambda x: [x] * len(flat) if scope == "global" else treedef.flatten_up_to(x)
    rs, norms_before = per_leaf(state.numerator), per_leaf(state.grad_norm)
    b3 = cast_scalar(beta3, _F32)
    gfs = [g.astype(_F32) for g in flat]
    # The cap: a gradient's ℓ2 norm (the tree's, or the leaf's) at most `growth` times the last.
    g_norms = [l2_norm(gf, axis=None).reshape([]) for gf in gfs]
    if scope == "global":
      g_norms = [l2_norm(jnp.stack(g_norms), axis=None).reshape([])] * len(flat)
    caps = [
      jnp.where((before > 0) & (gn > growth * before), growth * before / gn, 1.0)
      for gn, before in zip(g_norms, norms_before, strict=True)
    ]
    new_sums, inner_prods, denoms = [], [], []
    leaves = zip(resolved, to, gfs, ps, p0s, sums, ds, ms, caps, strict=True)
    for n, view, gf, p, p0, s, d, m, cap in leaves:
      gc = cap * gf
      w_s = (d * d / d0) * (1.0 if safeguard_warmup else lam)
      s_new = b3 * s.astype(_F32) + w_s * gc
      new_sums.append(s_new)
      inner_prods.append((lam * d * d / d0) * jnp.sum(gc * (p0.astype(_F32) - p.astype(_F32))))
      denoms.append(cast_scalar(1.0 if m is None else m, _F32) * jnp.sum(n.dual_norm(view(s_new))))
    if scope == "global":
      r_new = b3 * state.numerator + sum(inner_prods)
      den = sum(denoms)
      ok = jnp.isfinite(r_new) & jnp.isfinite(den)  # Else: skip this step in the estimate.
      new_d = jnp.where(ok, jnp.maximum(state.distance, coef * where_nonzero(den, r_new)), ds[0])
      new_r = jnp.where(ok, r_new, state.numerator)
      new_gn = jnp.where(ok, caps[0] * g_norms[0], state.grad_norm)
      oks = [ok] * len(flat)
    else:
      r_list = [b3 * r + ip for r, ip in zip(rs, inner_prods, strict=True)]
      oks = [jnp.isfinite(r) & jnp.isfinite(den) for r, den in zip(r_list, denoms, strict=True)]
      d_list = [
        jnp.where(ok, jnp.maximum(d, coef * where_nonzero(den, r)), d)
        for d, r, den, ok in zip(ds, r_list, denoms, oks, strict=True)
      ]
      r_list = [jnp.where(ok, r, r0) for r, r0, ok in zip(r_list, rs, oks, strict=True)]
      gn_list = [
        jnp.where(ok, cap * gn, gn0)
        for cap, gn, gn0, ok in zip(caps, g_norms, norms_before, oks, strict=True)
      ]
      new_d, new_r = treedef.unflatten(d_list), treedef.unflatten(r_list)
      new_gn = treedef.unflatten(gn_list)
    new_sums = [
      jnp.where(ok, s_new, s).astype(s.dtype)
      for s_new, s, ok in zip(new_sums, sums, oks, strict=True)
    ]
    directions, inner_state = inner.update(updates, state.inner, params)
    dirs = treedef.flatten_up_to(directions)
    out = [(lam * d).astype(u.dtype) * u for d, u in zip(ds, dirs, strict=True)]
    new_state = AdaptiveStepState(
      count=optax.safe_increment(state.count),
      distance=new_d,
      numerator=new_r,
      grad_norm=new_gn,
      grad_sum=treedef.unflatten(new_sums),
      params0=state.params0,
      inner=inner_state,
    )
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)


#: ``[0, 1]``: Prodigy's ``β₃`` (1 is D-Adaptation's plain sums).
_CLOSED_UNIT = Range(0.0, 1.0, high_open=False)
#: ``[1, ∞]``: the growth cap (``inf``: none).
_GROWTH = Range(1.0, math.inf, high_open=False)


def _check_estimate(owner, learning_rate, beta3, d0, relative_d0, coef, growth) -> None:
  """The estimate's settings, through :func:`normax._checks.check_args` (schedules and values
  traced under ``optax.inject_hyperparams`` are not checked there)."""
  check_args(
    owner,
    learning_rate=(learning_rate, NONNEGATIVE),
    beta3=(beta3, _CLOSED_UNIT),
    d0=(d0, POSITIVE),
    relative_d0=(relative_d0, NONNEGATIVE),
    coef=(coef, POSITIVE),
    growth=(growth, _GROWTH),
  )


class _ProdigyState(NamedTuple):
  m: Any  # EMA of d·g
  v: Any  # EMA of (d·g)²
  s: Any  # the estimate's weighted gradient sum
  x0: Any
  d: jax.Array  # the step-size estimate
  r: jax.Array  # the estimate's weighted numerator Σ ⟨g, x₀ − x⟩
  count: jax.Array


def _prodigy(
  learning_rate,
  *,
  betas: tuple[float, float],
  beta3: float,
  eps: float,
  d0: float,
  relative_d0: float,
  coef: float,
  weight_decay: float,
  safeguard_warmup: bool,
) -> optax.GradientTransformation:
  """Prodigy's Adam (Mishchenko & Defazio, 2023, Algorithm 3, as ``optax.contrib.prodigy``
  computes it) for muon_free's non-matrix leaves, in float32 whatever the parameters' dtype
  (its estimate underflows float16), with its own copy of ``x₀`` (the parameters can be
  donated) and the start ``max(d0, relative_d0 · max|x₀|)`` (the estimate is a distance in the
  ℓ∞ norm). Where optax's estimate becomes ``0/0`` (every gradient so far zero, or too small
  for float32 once scaled by ``d``) or non-finite (a NaN gradient), this one keeps its last
  value: a zero gradient gives a zero update and the estimate survives a NaN step."""
  b1, b2 = betas

  def f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x).astype(_F32), tree)

  def init_fn(params):
    x0 = jax.tree.map(lambda x: jnp.array(x, dtype=_F32, copy=True), params)
    zeros = lambda: jax.tree.map(jnp.zeros_like, x0)  # noqa: E731
    d = jnp.asarray(d0, _F32)
    if relative_d0 != 0:
      tops = [jnp.max(jnp.abs(p), initial=0) for p in jax.tree.leaves(x0)]
      top = jnp.max(jnp.stack(tops)) if tops else jnp.zeros([], _F32)  # Traceable under jit.
      d = jnp.maximum(d, relative_d0 * top)
    zero = jnp.zeros([], _F32)
    return _ProdigyState(zeros(), zeros(), zeros(), x0, d, zero, jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.muon_free needs the parameters: call tx.update(grads, state, params)."
      )
    g, x = f32(updates), f32(params)
    k = optax.safe_increment(state.count)
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    kf = k.astype(_F32)
    bc = jnp.sqrt(1 - b2**kf) / (1 - b1**kf)
    d = state.d
    dlr = d * lr * bc
    dg = jax.tree.map(lambda gi: d * gi, g)
    m = jax.tree.map(lambda mi, u: b1 * mi + (1 - b1) * u, state.m, dg)
    v = jax.tree.map(lambda vi, u: b2 * vi + (1 - b2) * u * u, state.v, dg)
    gap = optax.tree.vdot(g, jax.tree.map(jnp.subtract, state.x0, x))
    r = beta3 * state.r + (d / d0) * dlr * gap
    weight = (d if safeguard_warmup else dlr) / d0
    s = jax.tree.map(lambda si, u: beta3 * si + weight * u, state.s, dg)
    total = optax.tree.sum(jax.tree.map(jnp.abs, s))
    estimate = coef * r / jnp.where(total > 0, total, 1.0)
    fresh = (total > 0) & jnp.isfinite(estimate) & jnp.isfinite(total)
    # A step whose estimate is 0/0 or non-finite leaves the estimate's sums as they were.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(fresh, a, b), new, old)  # noqa: E731
    r, s = keep(r, state.r), keep(s, state.s)
    d = jnp.where(fresh, jnp.maximum(d, estimate), d)
    out = jax.tree.map(
      lambda mi, vi, xi: -weight_decay * dlr * xi - dlr * mi / (jnp.sqrt(vi) + d * eps), m, v, x
    )
    out = jax.tree.map(lambda u, gi: u.astype(gi.dtype), out, updates)
    return out, _ProdigyState(m, v, s, state.x0, d, r, k)

  return optax.GradientTransformation(init_fn, update_fn)


def _spec_tree(specs: Mapping[str, LayerSpec], labels: Any, attr: str):
  """A callable ``tree -> pytree of spec.<attr>`` through the labels (for norms and masses)."""

  def fn(tree):
    lab = labels(tree) if callable(labels) else labels
    return jax.tree.map(lambda label: getattr(specs[label], attr), lab)

  return fn


@renamed("normax.scion_free", momentum_dtype="mu_dtype=")
def scion_free(
  specs: Mapping[str, LayerSpec],
  labels: Any,
  *,
  learning_rate: float | optax.Schedule = 1.0,
  scope: Literal["global", "label", "leaf"] = "global",
  beta: float | optax.Schedule = 0.9,
  constrained: bool = True,
  nesterov: bool = False,
  momentum_init: Literal["zeros", "first_gradient"] = "zeros",
  mu_dtype=None,
  beta3: float = 0.999**0.5,
  d0: float = 1e-6,
  relative_d0: float = 1e-2,
  coef: float = 1.0,
  safeguard_warmup: bool = False,
  growth: float = 10.0,
  batch: bool = True,
) -> optax.GradientTransformation:
  r"""Learning-rate-free Scion: the step size ``γ`` estimated by :func:`normax.adaptive_step`.

  Scion's update with ``γ_t = λ_t d_t``:

  .. math::
    x \leftarrow (1 - λ_t d_t μ)\, x - λ_t d_t\, ρ\, \mathrm{dualize}(d),

  where ``d_t`` is the Prodigy-style estimate of the distance to a minimizer.
  With ``scope="global"`` (default) it is measured in the modular norm
  ``max_l ‖x_l‖_l / ρ_l`` of the specs' norms with the radii as masses, so
  the radii keep their role (relative step sizes between roles) and only
  Scion's learning rate is estimated; ``"label"`` gives each label its own
  estimate (in the max of its leaves' norms), ``"leaf"`` each leaf (in its
  own norm). ``λ`` is an optional schedule multiplying the estimate (1 by
  default; e.g. a cosine decay from 1). The chain (``scope="global"``) is::

    optax.chain(
      normax.adaptive_step(
        optax.chain(normax.momentum(beta, ...),
                    optax.partition(<normax.scion's steps per label: scale_by_lmo in each
                                     leaf's matrix view, scale_by_radius, add_constrained_decay>,
                                    labels)),
        norms=<spec.norm per leaf>, masses=<spec.radius per leaf>, views=<each leaf's view>,
        scope="global", ...),
      optax.scale(-1.0))

  Args:
    specs: Mapping from label to :class:`normax.LayerSpec`, as for
      :func:`normax.scion`.
    labels: Label pytree or callable, as for :func:`normax.scion`.
    learning_rate: ``λ``, a multiplier of the estimate (float or schedule).
    scope: ``"global"``, ``"label"`` or ``"leaf"`` (see above).
    beta: Momentum ``β``.
    constrained: Default decay ``μ = 1`` (SCG) rather than ``0`` (uSCG).
    nesterov: Nesterov momentum.
    momentum_init: ``"zeros"`` or ``"first_gradient"``.
    mu_dtype: dtype of the momentum buffer.
    beta3: Decay of the estimate's sums (Prodigy's ``β₃``).
    d0: Initial estimate (its floor with ``relative_d0``).
    relative_d0: The initial estimate as a fraction of the initial weights'
      size in the estimate's norm (see :func:`normax.adaptive_step`); ``0``:
      ``d0`` alone, as Prodigy. The default 1e-2 was chosen on a small GPT
      against ``d0 = 1e-6`` alone and 1e-4, 1e-3 (:doc:`/results`).
    coef: Multiplier of the estimate.
    safeguard_warmup: Leave ``λ`` out of the estimate's gradient sum (for a
      ``learning_rate`` schedule with warm-up; see :func:`normax.adaptive_step`).
    growth: Cap on a gradient's norm in the estimate, as a multiple of the
      previous one's (see :func:`normax.adaptive_step`).
    batch: Batched orthogonalization (see :func:`normax.scale_by_lmo`).

  Returns:
    An ``optax.GradientTransformation`` (needs ``params`` in ``update``).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> specs = {"hidden": normax.LayerSpec(normax.Spectral(method="svd"), radius=1.0),
    ...          "bias": normax.LayerSpec("bias_rms", radius=0.5)}
    >>> params = {"w": jnp.eye(4), "b": jnp.zeros(4)}
    >>> tx = normax.scion_free(specs, {"w": "hidden", "b": "bias"})
    >>> state = tx.init(params)
    >>> u, state = tx.update({"w": jnp.eye(4), "b": jnp.ones(4)}, state, params)
    >>> u["w"].diagonal()  # -d₀ (ρ·UVᵀ(0.1·g) + μ·x), d₀ = 0.01·‖x₀‖ = 0.01
    Array([-0.02, -0.02, -0.02, -0.02], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025 (Scion); Mishchenko & Defazio, *Prodigy*, 2023; Bernstein &
    Newhouse, *Old Optimizer, New Norm*, 2024, Sec. 3.1.
  """
  check_specs(specs, labels, "normax.scion_free")
  check_args("normax.scion_free", beta=(beta, UNIT))
  _check_estimate("normax.scion_free", learning_rate, beta3, d0, relative_d0, coef, growth)
  if scope not in ("global", "label", "leaf"):
    raise ValueError(f"scope must be 'global', 'label' or 'leaf', got {scope!r}.")
  label_fn = checked_labels(labels, specs, "specs")
  # Scion's own steps per label (views, constrained norms), before the learning rate.
  branches = scion_branches(specs, labels, constrained, batch)
  mom = momentum(beta, nesterov=nesterov, init=momentum_init, mu_dtype=mu_dtype)
  estimate = dict(
    learning_rate=learning_rate,
    beta3=beta3,
    d0=d0,
    relative_d0=relative_d0,
    coef=coef,
    safeguard_warmup=safeguard_warmup,
    growth=growth,
  )
  if scope == "label":
    per_label = {
      label: adaptive_step(
        optax.chain(mom, branches[label]),
        spec.norm,
        masses=spec.radius,
        views=spec_views(labels, spec),
        **estimate,
      )
      for label, spec in specs.items()
    }
    return optax.chain(optax.partition(per_label, label_fn), optax.scale(-1.0))

  def views(tree):  # Each leaf's view, as Scion's branches apply it.
    return jax.tree.unflatten(jax.tree.structure(tree), leaf_views(labels, specs, tree))

  step = adaptive_step(
    optax.chain(mom, optax.partition(branches, label_fn)),
    _spec_tree(specs, label_fn, "norm"),
    masses=_spec_tree(specs, label_fn, "radius"),
    scope=scope,
    views=views,
    **estimate,
  )
  return optax.chain(step, optax.scale(-1.0))


@renamed(
  "normax.muon_free",
  momentum_dtype="mu_dtype=",
  ns_coefficients="ns_coeffs=",
  ns_method="orthogonalizer=normax.Orthogonalizer(method=...)",
)
def muon_free(
  labels: Any = None,
  *,
  learning_rate: float | optax.Schedule = 1.0,
  scope: Literal["global", "leaf"] = "global",
  beta: float | optax.Schedule = 0.95,
  nesterov: bool = True,
  bias_correction: bool = True,
  ns_steps: int = 5,
  ns_coeffs: str | tuple = (3.4445, -4.7750, 2.0315),
  orthogonalizer: Orthogonalizer | None = None,
  roles: Roles | None = None,
  muon_convs: bool = True,
  muon_weight_dimension_numbers: Any = None,
  weight_decay: float = 0.0,
  mu_dtype=None,
  adam_b1: float = 0.9,
  adam_b2: float = 0.999,
  adam_eps: float = 1e-8,
  adam_weight_decay: float = 0.0,
  beta3: float = 0.999**0.5,
  d0: float = 1e-6,
  relative_d0: float = 1e-2,
  coef: float = 1.0,
  safeguard_warmup: bool = False,
  growth: float = 10.0,
  batch: bool = True,
) -> optax.GradientTransformation:
  r"""Learning-rate-free Muon: Prodigy-style step sizes on both of Muon's branches.

  On ``"muon"`` leaves, Muon's orthogonalized Nesterov momentum with the
  step ``λ_t d_t`` of :func:`normax.adaptive_step`, ``d_t`` estimating the
  distance to a minimizer in the RMS→RMS operator norm (``Spectral``:
  one estimate for all such leaves under their max norm with
  ``scope="global"``, one per leaf with ``"leaf"``). The direction is
  ``normax.Spectral().dualize``, ``√(d_out/d_in) UVᵀ`` (``muon``'s
  ``shape_scaling="rms"``): a unit step in that norm, so that ``d`` is a
  distance in it. On ``"adam"`` leaves, ``optax.contrib.prodigy`` — AdamW
  with the same estimate taken in the elementwise ℓ∞ norm. The chain is::

    optax.partition({
      "muon": optax.chain(normax.with_matrix_view(  # normax.muon's views
        normax.adaptive_step(
          optax.chain(normax.momentum(beta, nesterov=..., bias_correction=...),
                      normax.scale_by_lmo(normax.Spectral(...)),
                      optax.add_decayed_weights(weight_decay)),
          normax.Spectral(...), scope=scope, ...), views),
        optax.scale(-1.0)),
      "adam": optax.contrib.prodigy(learning_rate, betas=(adam_b1, adam_b2), ...)},
      <normax.muon's label function>)

  Args:
    labels: ``"muon"``/``"adam"`` per leaf as for :func:`normax.muon`. The
      routing is :func:`normax.muon`'s, leaf by leaf, from ``labels``,
      ``roles`` or ``muon_weight_dimension_numbers`` (``None`` of all three:
      :data:`normax.DEFAULT_MUON_RULES`, every 2-D leaf on Muon).
    learning_rate: ``λ``, a multiplier of the estimates (float or schedule).
    scope: ``"global"`` or ``"leaf"`` for the Muon leaves' estimate.
    beta: Momentum ``β``.
    nesterov: Nesterov momentum.
    bias_correction: Adam-style bias correction of the momentum.
    ns_steps: Newton–Schulz steps (as :func:`normax.muon`'s).
    ns_coeffs: Newton–Schulz coefficients (as :func:`normax.muon`'s).
    orthogonalizer: How ``U Vᵀ`` is computed (as :func:`normax.muon`'s).
    roles: :class:`normax.Roles` from :func:`normax.infer_roles`: the routing
      and matrix views of :func:`normax.muon` (hidden kernels, in their view,
      on the Muon branch; scanned stacks too).
    muon_convs: With ``roles``: conv kernels on the Muon branch (``True``).
    muon_weight_dimension_numbers: As for :func:`normax.muon`.
    weight_decay: Decoupled weight decay of the Muon leaves (times the step).
    mu_dtype: dtype of the Muon momentum buffer.
    adam_b1: Prodigy's ``β₁``.
    adam_b2: Prodigy's ``β₂``.
    adam_eps: Prodigy's ``eps``.
    adam_weight_decay: Prodigy's weight decay.
    beta3: Decay of the estimate's sums (both branches; Prodigy's ``β₃``).
    d0: Initial estimate (both branches; its floor with ``relative_d0``).
    relative_d0: The initial estimate as a fraction of the initial weights'
      size in each branch's norm: the largest RMS→RMS norm of the Muon
      leaves, the largest entry of the others; ``0``: ``d0`` alone, as Prodigy.
      The default 1e-2 was chosen on a small GPT (:doc:`/results`).
    coef: Multiplier of the estimate (both branches).
    safeguard_warmup: Prodigy's warm-up safeguard (both branches).
    growth: Cap on a gradient's norm in the Muon leaves' estimate, as a
      multiple of the previous one's (see :func:`normax.adaptive_step`).
    batch: Batched orthogonalization (see :func:`normax.scale_by_lmo`).

  Returns:
    An ``optax.GradientTransformation`` (needs ``params`` in ``update``).

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> params = {"w": jnp.ones((4, 8)), "b": jnp.zeros(8)}
    >>> tx = normax.muon_free()
    >>> state = tx.init(params)
    >>> grads = {"w": jax.random.normal(jax.random.key(0), (4, 8)), "b": jnp.ones(8)}
    >>> u, state = tx.update(grads, state, params)
    >>> bool((u["b"] < 0).all()), bool(jnp.abs(u["w"]).max() < 0.1)  # small first steps
    (True, True)

  References:
    Jordan et al., *Muon*, 2024; Mishchenko & Defazio, *Prodigy*, 2023;
    Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024, Sec. 3.
  """
  owner = "normax.muon_free"
  check_args(
    owner,
    beta=(beta, UNIT),
    ns_steps=(ns_steps, COUNT),
    weight_decay=(weight_decay, NONNEGATIVE),
    adam_b1=(adam_b1, UNIT),
    adam_b2=(adam_b2, UNIT),
    adam_eps=(adam_eps, NONNEGATIVE),
    adam_weight_decay=(adam_weight_decay, NONNEGATIVE),
  )
  _check_estimate(owner, learning_rate, beta3, d0, relative_d0, coef, growth)
  label_fn, views = muon_routing(labels, roles, muon_convs, muon_weight_dimension_numbers, owner)
  orth = muon_orthogonalizer(orthogonalizer, ns_coeffs, ns_steps, "frobenius", 1e-8, owner)
  spectral = Spectral(**{f.name: getattr(orth, f.name) for f in dataclasses.fields(orth)})
  hidden = adaptive_step(
    optax.chain(
      momentum(beta, nesterov=nesterov, bias_correction=bias_correction, mu_dtype=mu_dtype),
      scale_by_lmo(spectral, batch=batch),
      optax.add_decayed_weights(weight_decay),
    ),
    spectral,
    learning_rate=learning_rate,
    scope=scope,
    beta3=beta3,
    d0=d0,
    relative_d0=relative_d0,
    coef=coef,
    safeguard_warmup=safeguard_warmup,
    growth=growth,
  )
  adam = _prodigy(
    learning_rate,
    betas=(adam_b1, adam_b2),
    beta3=beta3,
    eps=adam_eps,
    d0=d0,
    relative_d0=relative_d0,
    coef=coef,
    weight_decay=adam_weight_decay,
    safeguard_warmup=safeguard_warmup,
  )
  # Muon's matrix views around the whole step: the estimate measures each leaf in its view.
  muon_branch = optax.chain(with_matrix_view(hidden, views), optax.scale(-1.0))
  return optax.partition({"muon": muon_branch, "adam": adam}, label_fn)
