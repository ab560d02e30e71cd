"""Scion: layerwise LMO steps on one momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import optax

from normax._decay import add_constrained_decay
from normax._leafwise import check_nonnegative
from normax._lmo import scale_by_lmo
from normax._momentum import momentum
from normax._radius import scale_by_radius
from normax._spec import LayerSpec, check_labels_arg, checked_labels, spec_views


def scion(
  learning_rate: float | optax.Schedule,
  specs: Mapping[str, LayerSpec],
  labels: Any,
  *,
  beta: float | optax.Schedule = 0.9,
  constrained: bool = True,
  nesterov: bool = False,
  momentum_init: Literal["zeros", "first_gradient"] = "zeros",
  momentum_dtype=None,
  batch: bool = True,
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
  otherwise (uSCG). The chain is::

    optax.chain(
      normax.momentum(beta, nesterov=..., init=..., dtype=...),
      optax.partition({label: optax.chain(normax.scale_by_lmo(spec.norm, views=...),
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
    momentum_dtype: dtype of the momentum buffer (e.g. ``jnp.bfloat16``).
    batch: Orthogonalize same-shape matrices in one batched call (see
      :func:`normax.scale_by_lmo`; sharded parameters keep their shardings
      either way, :doc:`/sharding`).
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
  if not isinstance(specs, Mapping) or not specs:
    raise TypeError(f"specs must be a non-empty mapping label -> normax.LayerSpec, got {specs!r}.")
  for label, spec in specs.items():
    if not isinstance(spec, LayerSpec):
      raise TypeError(
        f"specs[{label!r}] is {spec!r}; expected normax.LayerSpec(norm, radius, decay)."
      )
    check_nonnegative(spec.radius, f"specs[{label!r}].radius")
    check_nonnegative(spec.decay, f"specs[{label!r}].decay")
  check_nonnegative(learning_rate, "normax.scion learning_rate")
  check_labels_arg(labels, "normax.scion", specs)
  if qk_clip is not None and not isinstance(qk_clip, optax.GradientTransformation):
    raise TypeError(f"normax.scion: qk_clip must be normax.qk_clip(...), got {qk_clip!r}.")
  default_decay = 1.0 if constrained else 0.0
  branches = {
    label: optax.chain(
      scale_by_lmo(spec.norm, views=spec_views(labels, spec), batch=batch),
      scale_by_radius(spec.radius),
      add_constrained_decay(default_decay if spec.decay is None else spec.decay),
    )
    for label, spec in specs.items()
  }
  return optax.chain(
    momentum(beta, nesterov=nesterov, init=momentum_init, dtype=momentum_dtype),
    optax.partition(branches, checked_labels(labels, specs, "specs")),
    optax.scale_by_learning_rate(learning_rate),
    *([] if qk_clip is None else [qk_clip]),
  )
