"""SOAP: Adam run in the eigenbasis of Shampoo's factors, the basis refreshed periodically."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._checks import NONNEGATIVE, POSITIVE_COUNT, UNIT, check_args
from normax._kronecker import (
  EMPTY_SCALE,
  block_scales,
  blocks_shape,
  factor_zeros,
  from_blocks,
  map_leaves,
  matrix_leaves,
  mT,
  refresh_every,
  static_count,
  to_blocks,
  update_factors,
)

_F32 = jnp.float32


class SoapState(NamedTuple):
  """State of :func:`scale_by_soap`.

  Attributes:
    count: Step count.
    left: Left factors ``L`` (blocked, ``(..., grid, b_m, b_m)``).
    right: Right factors ``R``.
    left_basis: Eigenvectors ``Q_L`` of ``L`` (refreshed periodically).
    right_basis: Eigenvectors ``Q_R`` of ``R``.
    mu: Adam's first moment, in the parameters' own basis and shape.
    nu: Adam's second moment, in the rotated basis (blocked).
    left_scale: ``log2`` scale of each block of ``L`` (stored as ``L = 2^left_scale·left``, so
      that huge or tiny gradients neither overflow nor underflow it).
    right_scale: The same for ``R``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> state = normax.scale_by_soap().init({"w": jnp.ones((4, 3))})
    >>> state.left_basis["w"].shape, state.nu["w"].shape
    ((1, 1, 4, 4), (1, 1, 4, 3))
  """

  count: jax.Array
  left: optax.Updates
  right: optax.Updates
  left_basis: optax.Updates
  right_basis: optax.Updates
  mu: optax.Updates
  nu: optax.Updates
  left_scale: optax.Updates
  right_scale: optax.Updates


def scale_by_soap(
  *,
  b1: float = 0.95,
  b2: float = 0.95,
  eps: float = 1e-8,
  shampoo_beta: float | None = None,
  block_size: int | None = None,
  precondition_every: int = 10,
) -> optax.GradientTransformation:
  r"""SOAP: Adam in the eigenbasis of Shampoo's Kronecker factors.

  For each matrix ``G`` (last two axes; leading axes and blocks are
  independent), at step ``t``:

  .. math::
    L \leftarrow β_s L + (1-β_s)\, GGᵀ,\quad R \leftarrow β_s R + (1-β_s)\, GᵀG,

  every ``precondition_every`` steps (and at the first) ``Q_L, Q_R`` become
  the eigenvectors of ``L, R``; then with ``G̃ = Q_Lᵀ G Q_R``:

  .. math::
    m \leftarrow β_1 m + (1-β_1) G, \quad
    v \leftarrow β_2 v + (1-β_2)\, G̃^{2}, \quad
    G \mapsto Q_L\, \frac{Q_Lᵀ m Q_R / (1-β_1^t)}{\sqrt{v/(1-β_2^t)} + ε}\, Q_Rᵀ.

  ``m`` lives in the parameters' basis (so a basis change rotates it
  exactly), ``v`` in the rotated one (kept across a basis change, as in the
  paper). Bases are computed by ``eigh`` (the paper's reference refreshes
  them by one QR power step); the first step already uses the basis of its
  own gradient (the reference skips the first update instead).

  **As a norm.** With both moving averages off (``b1 = b2 = β_s = 0``,
  refreshed every step) ``Q_Lᵀ G Q_R`` is ``G``'s singular values, the
  update is ``Q_L sign(Σ) Q_Rᵀ = UVᵀ`` up to ``ε``: the spectral LMO again.
  Adam's own limit is sign descent (the ℓ∞ LMO), so SOAP is sign descent in
  a basis learned by Shampoo.

  Args:
    b1: Adam's ``β₁``.
    b2: Adam's ``β₂``.
    eps: Adam's ``ε``.
    shampoo_beta: ``β_s`` of the factors; ``None`` uses ``b2``.
    block_size: Block each side longer than this, as in
      :func:`normax.scale_by_shampoo`.
    precondition_every: Refresh the bases every this many steps.

  Returns:
    An ``optax.GradientTransformation``; chain ``optax.scale_by_learning_rate``
    after it.

  Examples:
    >>> import jax.numpy as jnp, optax, normax
    >>> tx = normax.scale_by_soap(b1=0.0, b2=0.0, shampoo_beta=0.0, eps=1e-6)
    >>> g = {"w": jnp.array([[3.0, 0.0], [0.0, 0.5]])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> jnp.round(u["w"], 4)  # without moving averages: U Vᵀ
    Array([[1., 0.],
           [0., 1.]], dtype=float32)

  References:
    Vyas et al., *SOAP: Improving and Stabilizing Shampoo using Adam*, 2024,
    Alg. 3; Bernstein & Newhouse, *Old Optimizer, New Norm*, 2024, Sec. 3.
  """
  check_args(  # Numbers; under optax.inject_hyperparams they may arrive traced.
    "normax.scale_by_soap",
    b1=(b1, UNIT),
    b2=(b2, UNIT),
    eps=(eps, NONNEGATIVE),
    shampoo_beta=(shampoo_beta, UNIT),
    block_size=(block_size, POSITIVE_COUNT),
    precondition_every=(precondition_every, POSITIVE_COUNT),
  )
  block_size, precondition_every = static_count(block_size), static_count(precondition_every)
  beta_s = b2 if shampoo_beta is None else shampoo_beta

  def init_fn(params):
    matrix_leaves(params, "normax.scale_by_soap")
    return SoapState(
      count=jnp.zeros([], jnp.int32),
      left=factor_zeros(params, block_size, 0),
      right=factor_zeros(params, block_size, 1),
      left_basis=factor_zeros(params, block_size, 0),
      right_basis=factor_zeros(params, block_size, 1),
      mu=jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _F32), params),
      nu=jax.tree.map(lambda p: jnp.zeros(blocks_shape(jnp.shape(p), block_size), _F32), params),
      left_scale=block_scales(params, block_size, 0, EMPTY_SCALE),
      right_scale=block_scales(params, block_size, 1, EMPTY_SCALE),
    )

  def update_fn(updates, state, params=None):
    del params
    matrix_leaves(updates, "normax.scale_by_soap")
    count = optax.safe_increment(state.count)
    t = count.astype(_F32)

    def leaf(g, left, right, left_basis, right_basis, mu, nu, ls, rs):
      m, n = g.shape[-2:]
      gf = g.astype(_F32)
      gb = to_blocks(gf, block_size)
      # The factors at unit scale, their log2 scales apart: only their eigenvectors are used.
      *_, left, right, ls, rs = update_factors(gb, left, right, ls, rs, beta_s, 1 - beta_s)

      def bases():
        return jnp.linalg.eigh(left)[1], jnp.linalg.eigh(right)[1]

      left_basis, right_basis = refresh_every(
        state.count, precondition_every, bases, (left_basis, right_basis)
      )
      mu = b1 * mu + (1 - b1) * gf
      g_rot = mT(left_basis) @ gb @ right_basis
      m_rot = mT(left_basis) @ to_blocks(mu, block_size) @ right_basis
      nu = b2 * nu + (1 - b2) * jnp.square(g_rot)
      step = (m_rot / (1 - b1**t)) / (jnp.sqrt(nu / (1 - b2**t)) + eps)
      out = from_blocks(left_basis @ step @ mT(right_basis), m, n)
      return out.astype(g.dtype), left, right, left_basis, right_basis, mu, nu, ls, rs

    return map_leaves(leaf, updates, state, count)

  return optax.GradientTransformation(init_fn, update_fn)
