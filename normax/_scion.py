"""Scion: layerwise LMO steps on one momentum."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import optax

from normax._checks import NONNEGATIVE, UNIT, check_args, renamed
from normax._decay import add_constrained_decay
from normax._leafwise import check_nonnegative, with_checked_updates
from normax._lmo import scale_by_lmo
from normax._momentum import momentum
from normax._projection import project_to_norm_ball
from normax._radius import scale_by_radius
from normax._spec import LayerSpec, check_labels_arg, checked_labels, spec_views


@renamed("normax.scion", momentum_dtype="mu_dtype=")
def scion(
  learning_rate: float | optax.Schedule,
  specs: Mapping[str, LayerSpec],
  labels: Any,
  *,
  beta: float | optax.Schedule = 0.9,
  constrained: bool = True,
  nesterov: bool = False,
  momentum_init: Literal["zeros", "first_gradient"] = "zeros",
  mu_dtype=None,
  batch: bool = True,
  project: bool = False,
  qk_clip: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
  r"""Scion: layerwise LMO steps on a momentum, constrained (SCG) or not (uSCG).

  With ``γ`` the learning rate and, per layer, its norm, radius ``ρ`` and
  decay ``μ`` from ``specs[label]``:

  .. math::
    d ← β·d + (1 − β)·g,

    x ← (1 − γμ)·x − γρ·dualize(d) = (1 − γμ)·x + γρ·lmo(d).

  ``μ`` is ``spec.decay`` if set, else ``1`` when ``constrained`` (SCG: a
  layer inside its ball ``‖x‖ ≤ ρ`` stays inside for ``γ ≤ 1``) and ``0``
  otherwise (uSCG).

  **The ball.** ``x ← (1 − γμ)x − γρ·dualize(d)`` is a convex combination for
  ``γμ ≤ 1``, so a layer with ``‖x‖ ≤ ρ/μ`` stays there if
  ``‖dualize(d)‖ ≤ 1``. Exact LMOs satisfy it; for a constrained layer
  (``μ ≠ 0``) Scion uses ``spec.norm.for_constraint()``, which for
  :class:`normax.Spectral` is ``bounded=True`` (a final cubic Newton–Schulz
  step; the quintic alone would let ``‖x‖`` reach ``1.2024·ρ/μ``). The bound
  then holds up to float rounding: ``1e-4`` relative in float32 over 10,000
  steps. Parameters stored in bfloat16 or float16 round every new weight;
  where ``γμ`` is below the dtype's resolution (``2⁻⁸`` in bfloat16) the decay
  rounds away and the weights can drift past the ball (to ``1.44ρ`` for
  ``L1ToLp(1)`` at ``γ = 10⁻³``): keep float32 parameters, or add
  :func:`normax.project_to_norm_ball` last (exact for every norm but the
  spectral ones, which it projects by SVD). A constant ``γμ > 1`` is warned
  about.

  The chain is::

    optax.chain(
      normax.momentum(beta, nesterov=..., init=..., mu_dtype=...),
      optax.partition({label: optax.chain(normax.scale_by_lmo(norm, views=...),  # see above
                                          normax.scale_by_radius(spec.radius),
                                          normax.add_constrained_decay(μ))
                       for label, spec in specs.items()}, labels),
      optax.scale_by_learning_rate(learning_rate),
      qk_clip)  # only when given

  Args:
    learning_rate: ``γ``, a float or an ``optax.Schedule``.
    specs: Mapping from label to :class:`normax.LayerSpec`.
    labels: A callable ``params -> pytree of labels`` (called on params at
      ``init`` and on updates at ``update``; it must depend only on
      structure and shapes), or such a pytree. A label missing from
      ``specs`` raises an error naming it and its parameter paths.
      :class:`normax.Roles` (from :func:`normax.infer_roles`) and
      :class:`normax.LabelFn` rules also give each parameter its
      :class:`normax.MatrixView`, which the LMO applies (``views=`` above;
      else ``spec.view``).
    beta: Momentum ``β = 1 - α`` (Scion's ``α = 0.1``), float or schedule.
    constrained: Default decay ``μ = 1`` (SCG) rather than ``0`` (uSCG).
    nesterov: Nesterov momentum.
    momentum_init: ``"zeros"`` or ``"first_gradient"``.
    mu_dtype: dtype of the momentum buffer (e.g. ``jnp.bfloat16``).
    batch: Orthogonalize same-shape matrices in one batched call (see
      :func:`normax.scale_by_lmo`; sharded parameters keep their shardings
      either way, :doc:`/sharding`).
    project: After each step, project every constrained layer onto its ball
      ``‖x‖ ≤ ρ/μ`` (``normax.project_to_norm_ball(norm, ρ/μ)`` appended
      per label): the bound then holds within one rounding of the parameters'
      dtype whatever the dtype and the learning rate. Cheap for elementwise
      and row/column norms; an SVD per matrix for the spectral ones.
    qk_clip: A transform appended to the chain, e.g. :func:`normax.qk_clip`
      (its ``update`` then takes ``max_logits=``).

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, normax
    >>> params = {"w": jnp.eye(4), "b": jnp.zeros(4)}
    >>> specs = {"hidden": normax.LayerSpec(normax.Spectral(method="svd"), radius=1.0),
    ...          "bias": normax.LayerSpec("bias_rms", radius=0.5)}
    >>> labels = {"w": "hidden", "b": "bias"}
    >>> tx = normax.scion(0.1, specs, labels)
    >>> state = tx.init(params)
    >>> grads = {"w": jnp.eye(4), "b": jnp.ones(4)}
    >>> updates, state = tx.update(grads, state, params)
    >>> updates["w"].diagonal()  # -γ(ρ·UVᵀ + μ·x) = -0.1·(1 + 1)
    Array([-0.2, -0.2, -0.2, -0.2], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Algorithm 1 (uSCG, SCG) and Sec. 5 (layerwise norms).
  """
  check_specs(specs, labels, "normax.scion")
  check_args("normax.scion", learning_rate=(learning_rate, NONNEGATIVE), beta=(beta, UNIT))
  if qk_clip is not None and not isinstance(qk_clip, optax.GradientTransformation):
    raise TypeError(f"normax.scion: qk_clip must be normax.qk_clip(...), got {qk_clip!r}.")
  default_decay = 1.0 if constrained else 0.0
  branches = scion_branches(specs, labels, constrained, batch)
  label_fn = checked_labels(labels, specs, "specs")
  chain = [
    momentum(beta, nesterov=nesterov, init=momentum_init, mu_dtype=mu_dtype),
    optax.partition(branches, label_fn),
    optax.scale_by_learning_rate(learning_rate),
  ]
  if project:
    chain.append(optax.partition(_projections(specs, labels, default_decay), label_fn))
  else:
    _warn_if_past_the_center(learning_rate, specs, default_decay)
  if qk_clip is not None:
    chain.append(qk_clip)
  return with_checked_updates(optax.chain(*chain), "normax.scion")


def check_specs(specs: Any, labels: Any, owner: str) -> None:
  """Scion's checks of ``specs`` and ``labels`` (shared by ``normax.scion_free``): a non-empty
  mapping of :class:`normax.LayerSpec` with non-negative radii and decays, and labels that
  can be looked up in it."""
  if not isinstance(specs, Mapping) or not specs:
    raise TypeError(
      f"{owner}: specs must be a non-empty mapping label -> normax.LayerSpec, got {specs!r}."
    )
  for label, spec in specs.items():
    if not isinstance(spec, LayerSpec):
      raise TypeError(
        f"specs[{label!r}] is {spec!r}; expected normax.LayerSpec(norm, radius, decay)."
      )
    check_nonnegative(spec.radius, f"specs[{label!r}].radius")
    check_nonnegative(spec.decay, f"specs[{label!r}].decay")
  check_labels_arg(labels, owner, specs)


def scion_branches(
  specs: Mapping[str, LayerSpec], labels: Any, constrained: bool, batch: bool
) -> dict[str, optax.GradientTransformation]:
  """Scion's step per label, before the learning rate (shared by ``normax.scion_free``):
  ``scale_by_lmo`` in each leaf's matrix view (the label function's, else ``spec.view``),
  ``scale_by_radius(ρ)`` and ``add_constrained_decay(μ)``; a constrained layer's norm is
  ``spec.norm.for_constraint()``."""
  default_decay = 1.0 if constrained else 0.0
  branches = {}
  for label, spec in specs.items():
    decay = _decay_of(spec, default_decay)
    # A constrained layer (μ > 0) keeps ‖x‖ ≤ ρ/μ only if its LMO step stays in the ball.
    norm = spec.norm if _is_zero(decay) else spec.norm.for_constraint()
    branches[label] = optax.chain(
      scale_by_lmo(norm, views=spec_views(labels, spec), batch=batch),
      scale_by_radius(spec.radius),
      add_constrained_decay(decay),
    )
  return branches


def _decay_of(spec: LayerSpec, default_decay: float):
  return default_decay if spec.decay is None else spec.decay


def _projections(specs: Mapping[str, LayerSpec], labels: Any, default_decay: float) -> dict:
  """Per label: the projection onto the ball ``‖x‖ ≤ ρ/μ`` (none where ``μ = 0``)."""
  out = {}
  for label, spec in specs.items():
    decay = _decay_of(spec, default_decay)
    if _is_zero(decay):
      out[label] = optax.identity()
      continue
    radius = spec.radius
    if callable(radius) or callable(decay):
      rho, mu = radius, decay

      def bound(count, rho=rho, mu=mu):
        return (rho(count) if callable(rho) else rho) / (mu(count) if callable(mu) else mu)
    else:
      bound = radius / decay
    out[label] = project_to_norm_ball(spec.norm, bound, views=spec_views(labels, spec))
  return out


def _warn_if_past_the_center(learning_rate, specs: Mapping[str, LayerSpec], default_decay):
  """Warns when a constant ``γμ > 1``: the step then leaves the ball ``‖x‖ ≤ ρ/μ``."""
  if not isinstance(learning_rate, int | float):
    return
  over = {
    label: learning_rate * mu
    for label, spec in specs.items()
    if isinstance(mu := _decay_of(spec, default_decay), int | float) and learning_rate * mu > 1
  }
  if over:
    warnings.warn(
      f"normax.scion: learning_rate·decay > 1 for {over}: the constrained step"
      " (1 − γμ)·x − γρ·dualize(d) is no longer a convex combination, so these layers can"
      " leave their balls ‖x‖ ≤ ρ/μ. Use learning_rate ≤ 1/μ, or project=True to project"
      " them back after each step.",
      stacklevel=3,
    )


def _is_zero(x) -> bool:
  """Whether a decay is the number 0 (a schedule or a traced value is not known to be)."""
  return isinstance(x, int | float) and x == 0
