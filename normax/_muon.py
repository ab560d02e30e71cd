"""The Muon family: a drop-in for ``optax.contrib.muon``, and its variants from normax pieces.

Examples:
  The rule behind ``normax.muon``'s default labels (optax's: 2-D leaves on Muon):

  >>> import jax.numpy as jnp, normax
  >>> normax.DEFAULT_MUON_RULES[0].label, normax.DEFAULT_MUON_RULES[0].ndim
  ('muon', 2)
  >>> params = {"kernel": jnp.ones((8, 8)), "stack": jnp.ones((4, 8, 8)), "bias": jnp.ones(8)}
  >>> normax.label_by_path(list(normax.DEFAULT_MUON_RULES), default="adam")(params)
  {'bias': 'adam', 'kernel': 'muon', 'stack': 'adam'}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers

from normax._checks import COUNT, NONNEGATIVE, POSITIVE, UNIT, check_args, renamed
from normax._decay import add_cautious_weight_decay
from normax._dual_norm import scale_by_dual_norm
from normax._hyperball import hyperball as hyperball_step
from normax._labels import label_by_path, views_of
from normax._leafwise import acc_dtype, broadcast_spec, leaf_paths, with_checked_updates
from normax._lmo import scale_by_lmo
from normax._matrix_view import MatrixView, with_matrix_view
from normax._momentum import momentum
from normax._normuon import scale_by_neuron_rms
from normax._orthogonalizer import Orthogonalizer
from normax._paths import leaf_shape, path_to_str
from normax._roles import ROLES, Roles
from normax._rules import Rule
from normax._schedules import optax_schedule
from normax._spec import check_labels_arg, checked_labels
from normax._spectral import Spectral

_MUON_LABELS = {"muon": None, "adam": None}

#: The rule behind ``normax.muon``'s default labels when neither ``roles``,
#: ``labels`` nor dimension numbers are given: ``optax.contrib.muon``'s routing,
#: exactly -- every 2-D leaf on Muon, every other leaf (vectors, scanned stacks,
#: attention kernels ``(d, heads, head_dim)``, conv kernels) on AdamW. Pass
#: ``roles=normax.infer_roles(model, batch)`` for Muon on every hidden matrix in
#: its right view. Wrapper-aware (one label per ``nnx.Param``), so the Adam branch
#: never holds a wrapped ``MaskedNode``.
DEFAULT_MUON_RULES = (Rule("*", "muon", ndim=2),)
_default_labels = label_by_path(list(DEFAULT_MUON_RULES), default="adam")


def _scale_by_fan(factor) -> optax.GradientTransformation:
  """Multiplies each matrix leaf by ``factor(fan_in, fan_out)`` (last two axes)."""

  def update_fn(updates, state, params=None):
    del params

    def leaf(u):
      if not u.size:  # A zero-size leaf has no fan to divide by: its update stays empty.
        return u
      f = factor(*u.shape[-2:])
      return u * (jnp.asarray(f).astype(u.dtype) if isinstance(f, jax.Array) else f)

    return jax.tree.map(leaf, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


#: ``optax.contrib.muon``'s Newton–Schulz arguments and their defaults, by the
#: :class:`normax.Orthogonalizer` field each sets.
_OPTAX_NS = {
  "coefficients": ("ns_coeffs", (3.4445, -4.7750, 2.0315)),
  "steps": ("ns_steps", 5),
  "preconditioning": ("preconditioning", "frobenius"),
  "eps": ("eps", 1e-8),
}


def muon_orthogonalizer(
  orthogonalizer: Orthogonalizer | None,
  ns_coeffs,
  ns_steps,
  preconditioning,
  eps,
  owner: str = "normax.muon",
) -> Orthogonalizer:
  """The :class:`normax.Orthogonalizer` of ``normax.muon``'s arguments (see its docstring).

  ``(ns_coeffs, ns_steps)`` read as optax reads them (:func:`optax_schedule`); given an
  ``orthogonalizer``, each of these four meets its field: the one that is set wins, and two
  set to different values are a ``ValueError``.
  """
  coefficients, steps = optax_schedule(ns_coeffs, ns_steps)
  given = {"coefficients": coefficients, "steps": steps}
  given.update(preconditioning=preconditioning, eps=eps)
  if orthogonalizer is None:
    return Orthogonalizer(method="newton_schulz", **given)
  if not isinstance(orthogonalizer, Orthogonalizer):
    raise TypeError(
      f"{owner}: orthogonalizer must be a normax.Orthogonalizer(...), got {orthogonalizer!r}."
    )
  raw = {"coefficients": ns_coeffs, "steps": ns_steps}
  raw.update(preconditioning=preconditioning, eps=eps)
  fields = {}
  for field, (arg, default) in _OPTAX_NS.items():
    mine = getattr(orthogonalizer, field)
    if mine == getattr(Orthogonalizer, field):  # The field is unset: muon's argument.
      fields[field] = given[field]
    elif _is_traced(raw[field]) or _same(raw[field], default) or _same(given[field], mine):
      fields[field] = mine  # The argument is unset (or traced, so not comparable), or agrees.
    else:
      raise ValueError(
        f"{owner}: {arg}={raw[field]!r} and orthogonalizer.{field}={mine!r} disagree;"
        f" set it in one place (e.g. drop {arg}=)."
      )
  return dataclasses.replace(orthogonalizer, **fields)


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _same(a, b) -> bool:
  """``a == b`` for hyperparameters: numbers, names, coefficient tuples, concrete arrays."""
  try:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
  except (TypeError, ValueError):
    return False


def _labels_from_dims(dims):
  """optax's routing: a leaf with dimension numbers is Muon's, a ``None`` one Adam's."""
  is_dims = lambda x: isinstance(x, MuonDimensionNumbers)  # noqa: E731

  def fn(tree):
    specs = broadcast_spec(
      dims, tree, is_spec=is_dims, what="dimension numbers", allow_callable=True
    )
    flat, treedef = jax.tree.flatten(tree)
    return treedef.unflatten(["adam" if s is None else "muon" for s in specs])

  return fn


def _dims_for_muon_leaves(dims, owner: str):
  """The dimension numbers of the leaves routed to Muon; ``None`` on one of them is an error."""
  is_dims = lambda x: isinstance(x, MuonDimensionNumbers)  # noqa: E731

  def fn(tree):
    specs = broadcast_spec(
      dims, tree, is_spec=is_dims, what="dimension numbers", allow_callable=True
    )
    missing = [p for p, s in zip(leaf_paths(tree), specs, strict=True) if s is None]
    if missing:
      raise ValueError(
        f"{owner}: {missing} are labelled 'muon' but their muon_weight_dimension_numbers"
        " are None (optax's marker for Adam). Label them 'adam', or give them"
        " MuonDimensionNumbers."
      )
    flat, treedef = jax.tree.flatten(tree)
    return treedef.unflatten(specs)

  return fn


def _roles_labels(roles: Roles, muon_convs: bool, owner: str) -> Roles:
  """Muon practice from inferred roles: hidden kernels (and convs) on Muon, the rest AdamW."""
  if not isinstance(roles, Roles):
    raise TypeError(
      f"{owner}: roles must be normax.Roles from normax.infer_roles, got {type(roles).__name__}."
    )
  mapping = {kind: "adam" for kind in ROLES}
  mapping["hidden"] = "muon"
  mapping["conv"] = "muon" if muon_convs else "adam"
  return roles.relabel(mapping)


def _muon_views(source: Any, kind: str, owner: str):
  """The view of each Muon leaf (a callable on the masked Muon tree): from the roles (a conv
  kernel read as one ``(taps·c_in, c_out)`` matrix), the dimension numbers or the label
  function's rules. A Muon leaf of rank >= 3 with no view is an error: its names cannot say
  which axes form its matrix."""

  def fn(tree):
    if kind == "dims":
      views = source(tree)
    else:
      views = views_of(source, tree)
      if kind == "roles" and views is not None:
        is_view = lambda v: v is None or isinstance(v, MatrixView)  # noqa: E731
        views = jax.tree.map(lambda v: v and v.merge_spatial(), views, is_leaf=is_view)
    is_view = lambda v: v is None or isinstance(v, MatrixView | MuonDimensionNumbers)  # noqa: E731
    flat = (
      [None] * len(jax.tree.leaves(tree))
      if views is None
      else broadcast_spec(views, tree, is_spec=is_view, what="matrix view", allow_callable=False)
    )
    bare = [
      f"{path_to_str(p)} {leaf_shape(x)}"
      for (p, x), v in zip(jax.tree_util.tree_flatten_with_path(tree)[0], flat, strict=True)
      if v is None and len(leaf_shape(x)) >= 3
    ]
    if bare:
      raise ValueError(
        f"{owner}: {bare} are labelled 'muon' but have rank >= 3 and no matrix view, so"
        " which axes form the matrix is unknown (an attention kernel (d, heads, head_dim), a"
        " scanned stack (layers, d_in, d_out), a conv kernel ...). Pass"
        " roles=normax.infer_roles(model, example_batch) instead of labels, or state the view:"
        " a normax.Rule(..., view=normax.MatrixView(fan_in=..., fan_out=...)) in"
        " label_by_path, or muon_weight_dimension_numbers."
      )
    return jax.tree.unflatten(jax.tree.structure(tree), flat)

  return fn


def muon_routing(labels: Any, roles: Roles | None, muon_convs: bool, dims: Any, owner: str):
  """``normax.muon``'s routing (shared by ``normax.muon_free``): the label function
  (``"muon"``/``"adam"`` per leaf, checked) and the matrix view of each Muon leaf (a callable
  on the Muon branch's tree), from ``roles``, ``labels`` or the dimension numbers ``dims``,
  else :data:`normax.DEFAULT_MUON_RULES` (see ``normax.muon``'s docstring)."""
  if roles is not None:
    if labels is not None or dims is not None:
      raise TypeError(
        f"{owner}: roles decide the routing and every matrix view; drop labels= and"
        " muon_weight_dimension_numbers= (change a role with"
        " roles.replace(path, normax.Role(...)))."
      )
    route = _roles_labels(roles, muon_convs, owner)
    views = _muon_views(route, "roles", owner)
  elif dims is not None:
    route = _labels_from_dims(dims)
    views = _muon_views(_dims_for_muon_leaves(dims, owner), "dims", owner)
  else:
    check_labels_arg(labels, owner, _MUON_LABELS)
    route = _default_labels
    views = _muon_views(labels, "labels", owner)
  label_fn = checked_labels(
    route if labels is None else labels,
    _MUON_LABELS,
    owner,
    fix="Label each leaf 'muon' (hidden matrices) or 'adam' (everything else).",
  )
  return label_fn, views


def _nonzero(x) -> bool:
  """Whether a (possibly array) hyperparameter is known to be nonzero; schedules count."""
  if callable(x):
    return True
  if isinstance(x, jax.core.Tracer):
    return False
  return bool(np.any(np.asarray(x) != 0))


_ORTH = "orthogonalizer=normax.Orthogonalizer({}=...)"


@renamed(
  "normax.muon",
  ns_coefficients="ns_coeffs=",
  momentum_dtype="mu_dtype=",
  ns_method=_ORTH.format("method"),
  ns_sharding=_ORTH.format("sharding"),
  ns_dtype=_ORTH.format("compute_dtype"),
  ns_precision=_ORTH.format("precision"),
)
def muon(
  learning_rate: float | optax.Schedule,
  ns_coeffs: str | tuple = (3.4445, -4.7750, 2.0315),
  ns_steps: int = 5,
  beta: float | optax.Schedule = 0.95,
  eps: float = 1e-8,
  weight_decay: float | optax.Schedule = 0.0,
  weight_decay_mask: Any = None,
  mu_dtype: Any = None,
  *,
  nesterov: bool = True,
  adaptive: bool = False,
  preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
  adam_b1: float = 0.9,
  adam_b2: float = 0.999,
  adam_eps_root: float = 0.0,
  adam_weight_decay: float = 0.0,
  adam_learning_rate: float | optax.Schedule | None = None,
  muon_weight_dimension_numbers: Any = None,
  consistent_rms: float | None = None,
  # normax: which leaves are Muon's, and their matrices.
  labels: Any = None,
  roles: Roles | None = None,
  muon_convs: bool = True,
  output_blocks: Any = None,
  # normax: how U Vᵀ is computed.
  orthogonalizer: Orthogonalizer | None = None,
  batch: bool = True,
  # normax: the step's scale, momentum and AdamW.
  shape_scaling: Literal["muon", "rms"] = "muon",
  bias_correction: bool = True,
  adam_eps: float | None = None,
  # normax: variants.
  normuon: bool = False,
  normuon_b2: float = 0.95,
  cautious_weight_decay: bool = False,
  hyperball: Literal["frobenius", "spectral"] | None = None,
  hyperball_radius: float | None = None,
  qk_clip: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
  r"""Muon: orthogonalized Nesterov momentum on hidden matrices, AdamW on the rest.

  A drop-in for ``optax.contrib.muon``: the same arguments, positions and
  defaults give the same updates (tested option by option to float
  tolerance). On leaves routed to Muon, with ``d`` the Nesterov momentum of
  :func:`normax.momentum` (Adam-style bias correction) and ``O = U Vᵀ(d)``
  its Newton–Schulz polar factor on the matrix view ``(fan_in, fan_out)``:

  .. math::
    x \leftarrow x - γ\,\big(s\, O + λ_{wd}\, x\big), \qquad
    s = \begin{cases} \max(1, \sqrt{d_{out}/d_{in}}) & \text{(default, Jordan's Muon)}\\
    c\,\sqrt{\max(d_{in}, d_{out})} & \text{consistent\_rms} = c \text{ (Moonlight)}
    \end{cases}

  Every other leaf gets ``optax.adamw`` (Nesterov, ``eps``, ``mu_dtype``
  shared). The chain is::

    optax.partition({
      "muon": optax.chain(
        normax.momentum(beta, nesterov=nesterov, bias_correction=True, mu_dtype=mu_dtype),
        normax.with_matrix_view(optax.chain(
          normax.scale_by_lmo(normax.Spectral(**<orthogonalizer's fields>)),  # see orthogonalizer
          #   adaptive: normax.scale_by_dual_norm(spectral, exact=False) instead
          #   normuon:  normax.scale_by_neuron_rms(normuon_b2)
          <shape scale s>), muon_weight_dimension_numbers, blocks=output_blocks),
        optax.add_decayed_weights(weight_decay, weight_decay_mask),
        #   cautious_weight_decay: normax.add_cautious_weight_decay(...) instead
        optax.scale_by_learning_rate(learning_rate)),
        #   hyperball: normax.hyperball(learning_rate, hyperball_radius) replaces the last two
      "adam": optax.adamw(adam_learning_rate or learning_rate, ...)}, labels)
    # qk_clip: optax.chain(<the partition>, qk_clip)

  **Which leaves are Muon's.**

  - ``roles=normax.infer_roles(model, batch)`` (recommended): Muon practice,
    from the model's computation. Every hidden kernel -- a product's weight
    that is not the head -- goes to Muon in its inferred matrix view
    (attention kernels ``(d, heads, head_dim)`` as ``d × heads·head_dim``,
    scanned layers and experts one matrix each, fused QKV kernels per part),
    conv kernels too as ``(taps·c_in, c_out)`` matrices unless
    ``muon_convs=False``; token tables, the head, gains and biases go to
    AdamW.
  - ``labels`` (``"muon"``/``"adam"`` per leaf, a pytree or a label function)
    route when given; a label function's :class:`normax.Rule` views give the
    Muon leaves' matrices, and a ``"muon"`` leaf of rank >= 3 with no view is
    an error (its names cannot say which axes form its matrix).
  - ``muon_weight_dimension_numbers`` (as in optax): a ``None`` leaf is
    Adam's, the others Muon's in their view. With ``labels`` too, ``labels``
    route and the dimension numbers give the views (a ``"muon"`` leaf whose
    dimension numbers are ``None`` is an error).
  - Otherwise, called like ``optax.contrib.muon``, the routing is optax's
    exactly (:data:`normax.DEFAULT_MUON_RULES`): every 2-D leaf on Muon,
    everything else on AdamW -- including rank-3 attention kernels, scanned
    stacks and convs, and a 2-D token table or head, which Muon practice
    keeps on AdamW. Pass ``roles`` for the better routing.

  **The matrix view.** A Muon leaf without a view is read as it is: its
  last two axes are ``(fan_in, fan_out)``, leading axes a stack.
  :class:`normax.MatrixView` or ``MuonDimensionNumbers`` (``optax.contrib``'s,
  also ``normax.MuonDimensionNumbers``: reduction = fan-in, output = fan-out)
  name the axes; ``output_blocks`` cuts the fan-out axis into equal blocks,
  each its own matrix (per attention head, or the three parts of a fused QKV
  kernel). See :func:`normax.with_matrix_view`.

  **Variants** (keyword-only, composable; each is a normax piece):

  - ``consistent_rms=0.2`` with ``weight_decay=0.1``: Moonlight (Liu et al.,
    2025): update RMS 0.2, like AdamW's, so AdamW's learning rate and decay
    carry over; decoupled decay on the Muon part.
  - ``preconditioning="aol"`` with ``ns_steps=4``: Turbo-Muon (Boissin et
    al., 2025); ``ns_coeffs="polar_express"`` (Amsel et al., 2025; computed
    for ``ns_steps``), ``"dion"``, ``"standard"``/``"quintic"``,
    ``"cubic"``; their bounds are on the documentation's Newton–Schulz page.
  - ``adaptive=True``: the step scaled by the dual norm ``⟨d, O⟩`` (Bernstein
    & Newhouse, 2024), :func:`normax.scale_by_dual_norm` with ``exact=False``.
    Unlike optax, which takes one inner product over a whole stacked leaf,
    each matrix of a stack gets its own.
  - ``normuon=True``: NorMuon (Li et al., 2025),
    :func:`normax.scale_by_neuron_rms` after the orthogonalization.
  - ``cautious_weight_decay=True``: decay only where update and weight agree
    in sign (Chen et al., 2025), :func:`normax.add_cautious_weight_decay`.
  - ``hyperball="frobenius"`` (or ``"spectral"``): MuonH / Muon-Hyperball
    (Wen et al., 2026): weights kept at their initial norm (or
    ``hyperball_radius``), :func:`normax.hyperball`; excludes weight decay.
  - ``output_blocks``: per-head / per-block orthogonalization (above).

  Args:
    learning_rate: ``γ`` of the Muon leaves, float or schedule.
    ns_coeffs: Newton–Schulz coefficients: a triple run ``ns_steps`` times,
      a sequence of per-step triples (each run once; at most ``ns_steps``
      of them), or a preset name (above).
    ns_steps: Newton–Schulz steps.
    beta: Momentum ``β``.
    eps: Adam's ``eps`` and the Newton–Schulz normalization's guard
      (``G / (‖G‖ + eps)``, as in optax); ``0`` makes the Muon step
      independent of the gradient's scale down to the smallest floats.
    weight_decay: Decoupled weight decay of the Muon leaves (times ``γ``).
    weight_decay_mask: Mask for it, as in ``optax.add_decayed_weights``.
    mu_dtype: dtype of the momentum buffers (both branches).
    nesterov: Nesterov momentum (both branches).
    adaptive: Scale by the dual norm (above).
    preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or
      ``"schatten"``, see :func:`normax.newton_schulz`.
    adam_b1: AdamW ``b1``.
    adam_b2: AdamW ``b2``.
    adam_eps_root: AdamW ``eps_root``.
    adam_weight_decay: AdamW weight decay.
    adam_learning_rate: AdamW learning rate; ``None`` uses ``learning_rate``.
    muon_weight_dimension_numbers: ``MuonDimensionNumbers`` per leaf (a
      pytree or a prefix, ``None`` for Adam leaves) or a callable on params.
    consistent_rms: ``c`` of the Moonlight scale; ``None``: Muon's width
      scale.
    labels: ``"muon"``/``"adam"`` per leaf: a pytree or a callable on params
      (e.g. from :func:`normax.label_by_path`); ``None``: see above.
    roles: :class:`normax.Roles` from :func:`normax.infer_roles`: route and
      view every leaf from the model's computation (see above).
    muon_convs: With ``roles``: conv kernels on Muon (``True``) or AdamW.
    output_blocks: Blocks of the output axis per Muon leaf (an int, a
      pytree or prefix of ints/``None``, or a callable).
    orthogonalizer: How ``U Vᵀ`` is computed, a :class:`normax.Orthogonalizer`:
      its ``method`` (``"newton_schulz"``, ``"gram_newton_schulz"``: fewer FLOPs
      on rectangular matrices, ``"svd"``: exact), ``compute_dtype`` (e.g.
      ``"bfloat16"``), matmul ``precision`` and ``sharding`` (:doc:`/sharding`).
      Its ``steps``, ``coefficients``, ``preconditioning`` and ``eps`` meet
      ``ns_steps``, ``ns_coeffs``, ``preconditioning`` and ``eps``: a field left at
      the :class:`normax.Orthogonalizer` default takes muon's argument, an
      argument left at muon's default takes the field, and a field and an
      argument both set to different values are an error. ``None``:
      ``normax.Orthogonalizer(method="newton_schulz", ...)`` from those
      arguments (optax's arithmetic).
    batch: Orthogonalize same-shape matrices in one batched call (see
      :func:`normax.scale_by_lmo`; sharded parameters keep their shardings
      either way, :doc:`/sharding`).
    shape_scaling: ``"muon"`` (default; the scale ``s`` above) or ``"rms"``:
      ``√(d_out/d_in)``, exactly ``normax.Spectral().dualize``, Scion's
      RMS→RMS step.
    bias_correction: Adam-style bias correction of the Muon momentum.
    adam_eps: AdamW ``eps`` if it should differ from ``eps``.
    normuon: NorMuon's per-neuron normalization.
    normuon_b2: Its second-moment EMA factor.
    cautious_weight_decay: Cautious weight decay on the Muon leaves.
    hyperball: ``"frobenius"`` or ``"spectral"``: keep each Muon weight on a
      sphere of that norm.
    hyperball_radius: Its radius; ``None`` keeps each weight's initial norm.
    qk_clip: A transform run after the update, e.g. :func:`normax.qk_clip`
      (MuonClip): the optimizer becomes ``optax.chain(<the above>, qk_clip)``,
      whose ``update`` takes ``max_logits=``.

  Returns:
    An ``optax.GradientTransformation``. Under
    ``optax.inject_hyperparams(normax.muon)`` every numeric argument becomes
    a traced hyperparameter, as for optax's muon, and goes through the same
    :class:`normax.Spectral` as a static one; a traced ``ns_steps`` runs
    Newton–Schulz as a ``fori_loop`` (pass ``static_args=("ns_steps",)`` to keep
    it unrolled; an ``orthogonalizer`` that sets ``steps`` or ``eps`` wins over
    a traced ``ns_steps`` or ``eps``, which cannot be compared with it).
    As there, a callable argument (``labels``, ``weight_decay_mask``,
    ``muon_weight_dimension_numbers``) is taken for a schedule: list it in
    ``static_args``.

  Examples:
    >>> import jax, jax.numpy as jnp, normax, optax
    >>> params = {"w": jnp.ones((4, 8)), "b": jnp.zeros(8)}
    >>> grads = {"w": jax.random.normal(jax.random.key(0), (4, 8)), "b": jnp.ones(8)}
    >>> tx = normax.muon(0.02)  # was optax.contrib.muon(0.02): the same routing
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> updates["w"].shape, bool((updates["b"] < 0).all())  # "b" is 1-D: AdamW
    ((4, 8), True)
    >>> moonlight = normax.muon(0.02, weight_decay=0.1, consistent_rms=0.2)
    >>> turbo = normax.muon(0.02, ns_steps=4, preconditioning="aol")
    >>> nor = normax.muon(0.02, normuon=True)
    >>> bf16 = normax.muon(0.02, orthogonalizer=normax.Orthogonalizer(compute_dtype="bfloat16"))
    >>> tx = optax.inject_hyperparams(normax.muon)(learning_rate=0.02)
    >>> updates, state = tx.update(grads, tx.init(params), params)

  References:
    Jordan et al., *Muon: An optimizer for hidden layers in neural
    networks*, 2024; Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024,
    Sec. 3.2; Liu et al., *Muon is Scalable for LLM Training*, 2025
    (Moonlight); Boissin et al., *Turbo-Muon*, 2025; Amsel et al., *The
    Polar Express*, 2025; Li et al., *NorMuon*, 2025; Chen et al.,
    *Cautious Weight Decay*, 2025; Wen et al., *Hyperball Optimization*,
    2026; ``optax.contrib.muon``.
  """
  if shape_scaling not in ("muon", "rms"):
    raise ValueError(f"shape_scaling must be 'muon' or 'rms', got {shape_scaling!r}.")
  check_args(
    "normax.muon",
    learning_rate=(learning_rate, NONNEGATIVE),
    ns_steps=(ns_steps, COUNT),
    beta=(beta, UNIT),
    eps=(eps, NONNEGATIVE),
    weight_decay=(weight_decay, NONNEGATIVE),
    adam_b1=(adam_b1, UNIT),
    adam_b2=(adam_b2, UNIT),
    adam_eps_root=(adam_eps_root, NONNEGATIVE),
    adam_weight_decay=(adam_weight_decay, NONNEGATIVE),
    adam_learning_rate=(adam_learning_rate, NONNEGATIVE),
    consistent_rms=(consistent_rms, NONNEGATIVE),
    normuon_b2=(normuon_b2, UNIT),
    hyperball_radius=(hyperball_radius, POSITIVE),
    adam_eps=(adam_eps, NONNEGATIVE),
  )
  if shape_scaling == "rms" and consistent_rms is not None:
    raise ValueError("consistent_rms sets the shape scale; it cannot be combined with 'rms'.")
  if hyperball not in (None, "frobenius", "spectral"):
    raise ValueError(f"hyperball must be None, 'frobenius' or 'spectral', got {hyperball!r}.")
  if hyperball is not None and (_nonzero(weight_decay) or cautious_weight_decay):
    raise ValueError(
      "hyperball keeps the weights' norm fixed and replaces weight decay: pass weight_decay=0."
    )
  if qk_clip is not None and not isinstance(qk_clip, optax.GradientTransformation):
    raise TypeError(f"normax.muon: qk_clip must be normax.qk_clip(...), got {qk_clip!r}.")
  orth = muon_orthogonalizer(orthogonalizer, ns_coeffs, ns_steps, preconditioning, eps)
  spectral = Spectral(**{f.name: getattr(orth, f.name) for f in dataclasses.fields(orth)})
  if adaptive:
    orth = scale_by_dual_norm(spectral, exact=False)
  else:
    orth = scale_by_lmo(spectral, batch=batch)

  # Spectral's direction is √(d_out/d_in)·O (squared with the adaptive factor); scale to s·O.
  power = 2 if adaptive else 1

  def factor(d_in, d_out):
    rms = math.sqrt(d_out / d_in)
    if shape_scaling == "rms":
      target = rms
    elif consistent_rms is None:
      target = max(1.0, rms)
    else:
      return consistent_rms * (math.sqrt(max(d_in, d_out)) / rms**power)
    return target / rms**power

  view = [orth]
  if normuon:
    view.append(scale_by_neuron_rms(normuon_b2))
  view.append(_scale_by_fan(factor))
  if hyperball is not None:
    view.append(hyperball_step(learning_rate, hyperball_radius, norm=hyperball))

  label_fn, views = muon_routing(
    labels, roles, muon_convs, muon_weight_dimension_numbers, "normax.muon"
  )
  hidden = [
    momentum(beta, nesterov=nesterov, bias_correction=bias_correction, mu_dtype=mu_dtype),
    with_matrix_view(optax.chain(*view), views, blocks=output_blocks),
  ]
  if hyperball is None:
    decay = add_cautious_weight_decay if cautious_weight_decay else optax.add_decayed_weights
    hidden += [decay(weight_decay, weight_decay_mask), optax.scale_by_learning_rate(learning_rate)]
  adam = optax.adamw(
    learning_rate if adam_learning_rate is None else adam_learning_rate,
    b1=adam_b1,
    b2=adam_b2,
    eps=eps if adam_eps is None else adam_eps,
    eps_root=adam_eps_root,
    weight_decay=adam_weight_decay,
    mu_dtype=mu_dtype,
    nesterov=nesterov,
  )
  branches = {"muon": _in_float32(optax.chain(*hidden)), "adam": _in_float32(adam, state=True)}
  tx = optax.partition(branches, label_fn)
  if qk_clip is not None:
    tx = optax.chain(tx, qk_clip)
  return with_checked_updates(tx, "normax.muon")


def _in_float32(
  inner: optax.GradientTransformation, state: bool = False
) -> optax.GradientTransformation:
  """``inner`` on 16-bit float updates cast to float32, its output cast back to their dtype.

  Muon's Nesterov output ``β d + (1 − β) g`` (bias-corrected: about 1.5 g at step 1) rounded
  to float16 before Newton–Schulz overflowed to inf for gradients near 4e4 (float16's largest
  value is 65504); in float32 it reaches Newton–Schulz intact, which is scale-free. With
  ``state``, float16 parameters are seen as float32 too, so ``inner`` keeps float32 state for
  them: AdamW's ``eps = 1e-8`` is 0 in float16, and a zero gradient gave 0/0 = NaN.
  """

  def widen(tree, which):
    return jax.tree.map(lambda x: x.astype(jnp.float32) if which(x.dtype) else x, tree)

  def is_float16(dtype):
    return dtype == jnp.float16

  def is_narrow(dtype):
    return acc_dtype(dtype) != dtype

  def init_fn(params):
    return inner.init(widen(params, is_float16) if state else params)

  def update_fn(updates, inner_state, params=None):
    dtypes = jax.tree.map(lambda u: u.dtype, updates)
    if state and params is not None:
      params = widen(params, is_float16)
    # (With state, only what init widened: optax keeps a moment in its gradient's dtype.)
    wide = widen(updates, is_float16 if state else is_narrow)
    out, inner_state = inner.update(wide, inner_state, params)
    return jax.tree.map(lambda u, d: u.astype(d), out, dtypes), inner_state

  return optax.GradientTransformation(init_fn, update_fn)
