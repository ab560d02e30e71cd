"""The Muon recipe: spectral steps with Nesterov momentum on hidden matrices, AdamW elsewhere."""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from normax._labels import Rule, checked_labels, label_by_path
from normax._leafwise import check_nonnegative
from normax._lmo import scale_by_lmo
from normax._momentum import momentum
from normax._spectral import Spectral

_MUON_LABELS = {"muon": None, "adam": None}


# Wrapper-aware (one label per nnx.Param, not per array inside it), so the
# AdamW branch's state never holds an nnx.Param wrapping an optax.MaskedNode.
_default_labels = label_by_path([Rule("*", "muon", ndim=2)], default="adam")


def _scale_by_fan(factor) -> optax.GradientTransformation:
  """Multiplies each matrix leaf by ``factor(fan_in, fan_out)`` (last two axes)."""

  def update_fn(updates, state, params=None):
    del params

    def scale(u):  # A zero-size leaf has no fan to divide by: its update stays empty.
      return u * jnp.asarray(factor(*u.shape[-2:]), u.dtype) if u.size else u

    return jax.tree.map(scale, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def muon(
  learning_rate: float | optax.Schedule,
  *,
  labels: Any = None,
  beta: float | optax.Schedule = 0.95,
  nesterov: bool = True,
  bias_correction: bool = True,
  ns_steps: int = 5,
  ns_coefficients: str | tuple = "quintic",
  ns_method: str = "newton_schulz",
  ns_sharding: str = "auto",
  shape_scaling: Literal["muon", "rms"] = "muon",
  weight_decay: float | optax.Schedule = 0.0,
  weight_decay_mask: Any = None,
  momentum_dtype=None,
  adam_learning_rate: float | optax.Schedule | None = None,
  adam_b1: float = 0.9,
  adam_b2: float = 0.999,
  adam_eps: float = 1e-8,
  adam_eps_root: float = 0.0,
  adam_weight_decay: float = 0.0,
  batch: bool = True,
) -> optax.GradientTransformation:
  r"""Muon: orthogonalized Nesterov momentum on hidden matrices, AdamW on the rest.

  On leaves labelled ``"muon"`` (with ``d`` from :func:`normax.momentum`):

  .. math::
    x ← x − γ·(s(d_in, d_out)·U Vᵀ(d) + λ_wd·x),

  where ``U Vᵀ`` is the Newton–Schulz polar factor and ``s`` is
  ``max(1, √(d_out/d_in))`` (``shape_scaling="muon"``, Jordan's Muon and
  ``optax.contrib.muon``) or ``√(d_out/d_in)`` (``"rms"``: exactly
  ``normax.Spectral().dualize``, the RMS→RMS LMO of Scion). Leaves labelled
  ``"adam"`` get ``optax.adamw``. The defaults reproduce
  ``optax.contrib.muon``: ``β = 0.95``, Nesterov with Adam-style bias
  correction, 5 quintic steps ``(3.4445, -4.7750, 2.0315)``, decoupled decay
  after the shape scale, and Nesterov AdamW sharing ``eps`` and the momentum
  dtype. The chain is::

    optax.partition({
      "muon": optax.chain(
        normax.momentum(beta, nesterov=..., bias_correction=..., dtype=...),
        normax.scale_by_lmo(normax.Spectral(steps=..., coefficients=...)),
        <shape scale max(1, √(d_in/d_out)) when shape_scaling="muon">,
        optax.add_decayed_weights(weight_decay, weight_decay_mask),
        optax.scale_by_learning_rate(learning_rate)),
      "adam": optax.adamw(adam_learning_rate, ...)}, labels)

  Args:
    learning_rate: ``γ`` of the Muon leaves, float or schedule.
    labels: ``"muon"``/``"adam"`` per leaf: a pytree, a callable on params,
      or ``None`` for every 2-D leaf on Muon (as ``optax.contrib.muon``).
      The Muon recipe puts embeddings and output heads on AdamW: label them
      ``"adam"`` (e.g. with a path-based label function).
    beta: Momentum ``β``.
    nesterov: Nesterov momentum (both branches).
    bias_correction: Adam-style bias correction of the momentum.
    ns_steps: Newton–Schulz steps.
    ns_coefficients: Newton–Schulz schedule (see :class:`normax.Spectral`).
    ns_method: ``"newton_schulz"`` or ``"gram_newton_schulz"`` (fewer FLOPs on
      rectangular matrices), see :class:`normax.Spectral`.
    ns_sharding: Where Newton–Schulz runs on sharded parameters:
      ``"auto"``, ``"partition"``, ``"gather"`` or ``"distribute"`` (the ``sharding``
      option of :class:`normax.Spectral`; see ``docs/sharding.md``).
    shape_scaling: ``"muon"`` or ``"rms"``, see above.
    weight_decay: Decoupled weight decay of the Muon leaves.
    weight_decay_mask: Mask for it, as in ``optax.add_decayed_weights``.
    momentum_dtype: dtype of the momentum buffers (both branches).
    adam_learning_rate: AdamW learning rate; ``None`` uses ``learning_rate``.
    adam_b1: AdamW ``b1``.
    adam_b2: AdamW ``b2``.
    adam_eps: AdamW ``eps``.
    adam_eps_root: AdamW ``eps_root``.
    adam_weight_decay: AdamW weight decay.
    batch: Orthogonalize same-shape matrices in one batched call (see
      :func:`normax.scale_by_lmo`; sharded parameters keep their shardings
      either way, ``docs/sharding.md``).

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> params = {"w": jnp.ones((4, 8)), "b": jnp.zeros(8)}
    >>> tx = normax.muon(0.02)
    >>> state = tx.init(params)
    >>> grads = {"w": jax.random.normal(jax.random.key(0), (4, 8)), "b": jnp.ones(8)}
    >>> updates, state = tx.update(grads, state, params)
    >>> updates["w"].shape, bool((updates["b"] < 0).all())  # "b" is 1-D: AdamW
    ((4, 8), True)

  References:
    Jordan et al., *Muon: An optimizer for hidden layers in neural
    networks*, 2024; Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024,
    Sec. 3.2; Pethick et al., 2025, Table 2 (``Spectral``).
  """
  if shape_scaling not in ("muon", "rms"):
    raise ValueError(f"shape_scaling must be 'muon' or 'rms', got {shape_scaling!r}.")
  for what, value in (
    ("learning_rate", learning_rate),
    ("adam_learning_rate", adam_learning_rate),
    ("weight_decay", weight_decay),
    ("adam_weight_decay", adam_weight_decay),
  ):
    check_nonnegative(value, f"normax.muon {what}")
  if not isinstance(ns_steps, int):
    raise TypeError(
      f"ns_steps must be a Python int (the Newton–Schulz loop is unrolled), got"
      f" {ns_steps!r}. Under optax.inject_hyperparams pass static_args=('ns_steps',)."
    )
  spectral = Spectral(
    method=ns_method, steps=ns_steps, coefficients=ns_coefficients, sharding=ns_sharding
  )
  hidden = [
    momentum(beta, nesterov=nesterov, bias_correction=bias_correction, dtype=momentum_dtype),
    scale_by_lmo(spectral, batch=batch),
  ]
  if shape_scaling == "muon":  # Spectral gives √(d_out/d_in); Muon wants max(1, √(d_out/d_in)).
    hidden.append(_scale_by_fan(lambda d_in, d_out: max(1.0, math.sqrt(d_in / d_out))))
  hidden += [
    optax.add_decayed_weights(weight_decay, weight_decay_mask),
    optax.scale_by_learning_rate(learning_rate),
  ]
  adam = optax.adamw(
    learning_rate if adam_learning_rate is None else adam_learning_rate,
    b1=adam_b1,
    b2=adam_b2,
    eps=adam_eps,
    eps_root=adam_eps_root,
    weight_decay=adam_weight_decay,
    mu_dtype=momentum_dtype,
    nesterov=nesterov,
  )
  label_fn = checked_labels(
    _default_labels if labels is None else labels,
    _MUON_LABELS,
    "normax.muon",
    fix="Label each leaf 'muon' (hidden matrices) or 'adam' (everything else).",
  )
  return optax.partition({"muon": optax.chain(*hidden), "adam": adam}, label_fn)
