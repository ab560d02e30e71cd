"""Shampoo: steepest descent under a learned norm (Kronecker-factored preconditioning)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import l2_norm, where_nonzero
from normax._checks import COUNT, NONNEGATIVE, POSITIVE, POSITIVE_COUNT, UNIT, check_args
from normax._kronecker import (
  EMPTY_SCALE,
  block_scales,
  factor_zeros,
  from_blocks,
  inverse_root,
  inverse_root_newton,
  map_leaves,
  matrix_leaves,
  refresh_every,
  static_count,
  to_blocks,
  update_factors,
)
from normax._registry import get_norm

_F32 = jnp.float32


class ShampooState(NamedTuple):
  """State of :func:`scale_by_shampoo`: the factors and their cached inverse roots.

  Each factor is stored scaled, ``L = 2^left_scale · left`` (one exponent per block), so
  that neither ``GGᵀ`` of a huge gradient overflows nor that of a tiny one underflows;
  likewise each cached root, ``L̂^{-e} = 2^left_root_scale · left_root``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> state = normax.scale_by_shampoo(block_size=2).init({"w": jnp.ones((4, 3))})
    >>> state.left["w"].shape, state.left_scale["w"].shape  # (blocks, blocks, b, b), per block
    ((2, 2, 2, 2), (2, 2))
  """

  count: jax.Array
  left: optax.Updates
  right: optax.Updates
  left_root: optax.Updates
  right_root: optax.Updates
  left_scale: optax.Updates
  right_scale: optax.Updates
  left_root_scale: optax.Updates
  right_root_scale: optax.Updates


def scale_by_shampoo(
  *,
  beta2: float | None = 0.999,
  exponent: float = 0.25,
  eps: float = 1e-6,
  block_size: int | None = None,
  precondition_every: int = 1,
  graft: Any = None,
  root_method: str = "eigh",
  newton_steps: int = 40,
) -> optax.GradientTransformation:
  r"""Shampoo's Kronecker-factored preconditioning of each matrix (a learned norm).

  For each matrix ``G`` (last two axes; leading axes and blocks are
  independent), with ``e`` the exponent:

  .. math::
    L \leftarrow β_2 L + (1-β_2)\, G Gᵀ, \quad
    R \leftarrow β_2 R + (1-β_2)\, Gᵀ G, \quad
    G \mapsto \hat L^{-e}\, G\, \hat R^{-e},

  with ``L̂ = L/(1-β_2^t)`` (bias-corrected) and the inverse roots taken by
  eigendecomposition or by a coupled Newton iteration, regularized as
  ``(L̂ + ε ‖L̂‖_F I)^{-e}`` (relative ``ε``; a zero factor maps to a zero
  update). ``beta2=None``
  accumulates plain sums ``L ← L + GGᵀ`` (original Shampoo, Adagrad-like).

  **As a norm.** Shampoo is steepest descent under the norm
  ``‖ΔW‖ = ‖L^{e} ΔW R^{e}‖`` learned from the gradients. Without
  accumulation (``beta2=0``, ``e = 1/4``) it is the spectral LMO: with
  ``G = UΣVᵀ``, ``(GGᵀ)^{-1/4} G (GᵀG)^{-1/4} = UVᵀ``, the direction of
  :class:`normax.Spectral` (which scales it by ``√(d_out/d_in)``); with
  accumulation it searches for the norm (Bernstein & Newhouse, 2024,
  Sec. 3.2).

  Args:
    beta2: EMA decay of the factors, or ``None`` for plain sums.
    exponent: ``e`` of each side (``1/4``: Shampoo for matrices; ``1/2``
      gives the "Shampoo²"/one-sided whitening variants).
    eps: Relative regularization of the factors: ``ε‖L̂‖_F`` is added to
      each eigenvalue.
    block_size: Split each side longer than this into blocks (zero-padded to
      a multiple), each block with its own factors: memory ``O(b²)`` per
      block instead of ``O(d²)`` per matrix. ``None``: no blocking.
    precondition_every: Recompute the inverse roots every this many steps
      (the first step always); the factors are updated every step.
    graft: Take each tensor's step size from another norm's LMO (grafting):
      ``None`` keeps Shampoo's own; a :class:`normax.Norm` or name ``N``
      rescales the direction ``D`` to ``‖N.dualize(G)‖_F · D / ‖D‖_F``.
      ``"spectral"`` makes the unaccumulated case exactly
      ``Spectral().dualize``; ``normax.Sign(normalized=False)`` grafts sign
      descent's (RMSprop-without-EMA's) step size.
    root_method: ``"eigh"`` (exact, by ``jnp.linalg.eigh``) or ``"newton"``
      (the coupled Newton iteration of Guo & Higham: matmuls only, the
      faster choice on accelerators; needs ``1/exponent`` an integer).
    newton_steps: Iterations of ``"newton"`` (a ratio ``ε`` of smallest to
      largest eigenvalue needs about ``log(1/ε)/log(((p+1)/p)^p)`` steps to
      reach the quadratic phase, plus a few).

  Returns:
    An ``optax.GradientTransformation``; chain ``normax.momentum`` around it
    and ``optax.scale_by_learning_rate`` after it.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.scale_by_shampoo(beta2=0.0, eps=0.0)
    >>> g = {"w": jnp.array([[3.0, 0.0], [0.0, 0.5]])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> jnp.round(u["w"], 4)  # no accumulation: U Vᵀ
    Array([[1., 0.],
           [0., 1.]], dtype=float32)

  References:
    Gupta, Koren & Singer, *Shampoo: Preconditioned Stochastic Tensor
    Optimization*, 2018, Alg. 1; Anil et al., *Scalable Second Order
    Optimization for Deep Learning*, 2020 (blocking, grafting, infrequent
    roots); Guo & Higham, *A Schur–Newton method for the matrix p-th root
    and its inverse*, 2006 (coupled Newton); Bernstein & Newhouse, *Old
    Optimizer, New Norm*, 2024, Sec. 3.2.
  """
  # Numbers are checked here; under optax.inject_hyperparams they may arrive traced.
  check_args(
    "normax.scale_by_shampoo",
    beta2=(beta2, UNIT),
    exponent=(exponent, POSITIVE),
    eps=(eps, NONNEGATIVE),
    block_size=(block_size, POSITIVE_COUNT),
    precondition_every=(precondition_every, POSITIVE_COUNT),
    newton_steps=(newton_steps, COUNT),
  )
  block_size, precondition_every = static_count(block_size), static_count(precondition_every)
  graft_norm = None if graft is None else get_norm(graft)
  if root_method not in ("eigh", "newton"):
    raise ValueError(f"root_method must be 'eigh' or 'newton', got {root_method!r}.")
  if root_method == "newton":
    p = round(1 / exponent)
    if abs(p * exponent - 1) > 1e-9 or p < 1:
      raise ValueError(
        f"root_method='newton' computes A^(-1/p) for an integer p; exponent={exponent} is not"
        " 1/p. Use root_method='eigh' for other exponents."
      )

    def root(mat):
      return inverse_root_newton(mat, p, eps, newton_steps)
  else:

    def root(mat):
      return inverse_root(mat, exponent, eps)

  def init_fn(params):
    matrix_leaves(params, "normax.scale_by_shampoo")
    return ShampooState(
      count=jnp.zeros([], jnp.int32),
      left=factor_zeros(params, block_size, 0),
      right=factor_zeros(params, block_size, 1),
      left_root=factor_zeros(params, block_size, 0),
      right_root=factor_zeros(params, block_size, 1),
      left_scale=block_scales(params, block_size, 0, EMPTY_SCALE),
      right_scale=block_scales(params, block_size, 1, EMPTY_SCALE),
      left_root_scale=block_scales(params, block_size, 0, 0.0),
      right_root_scale=block_scales(params, block_size, 1, 0.0),
    )

  def update_fn(updates, state, params=None):
    del params
    matrix_leaves(updates, "normax.scale_by_shampoo")
    count = optax.safe_increment(state.count)
    if beta2 is None:
      decay, weight, correction = 1.0, 1.0, 1.0
    else:
      decay, weight = beta2, 1.0 - beta2
      correction = 1.0 - beta2 ** count.astype(_F32)

    def leaf(g, left, right, left_root, right_root, ls, rs, lrs, rrs):
      m, n = g.shape[-2:]
      # The blocks at unit scale (gb · 2^log_m is G). Factors and roots carry their scales
      # apart (see ShampooState), so the update is scale-free.
      gb = to_blocks(g.astype(_F32), block_size)
      gb, log_m, left, right, ls, rs = update_factors(gb, left, right, ls, rs, decay, weight)
      log_correction = jnp.log2(jnp.asarray(correction, _F32))

      def roots():  # (A·2^s)^(-e) = A^(-e)·2^(-e·s); ε is relative, so it scales along.
        return (
          root(left),
          root(right),
          -exponent * (ls - log_correction),
          -exponent * (rs - log_correction),
        )

      left_root, right_root, lrs, rrs = refresh_every(
        state.count, precondition_every, roots, (left_root, right_root, lrs, rrs)
      )
      scale = jnp.exp2(log_m + lrs + rrs)[..., None, None]
      d = from_blocks(scale * (left_root @ gb @ right_root), m, n)
      if graft_norm is not None:
        graft_norm.check(g.shape, g.dtype)
        d = d * _fro_ratio(graft_norm.dualize(g.astype(_F32)), d)
      return d.astype(g.dtype), left, right, left_root, right_root, ls, rs, lrs, rrs

    return map_leaves(leaf, updates, state, count)

  return optax.GradientTransformation(init_fn, update_fn)


def _fro_ratio(target: jax.Array, d: jax.Array) -> jax.Array:
  """``‖target‖_F / ‖d‖_F`` per matrix (last two axes), broadcastable against ``d``."""
  return where_nonzero(l2_norm(d, (-2, -1)), l2_norm(target, (-2, -1)))
