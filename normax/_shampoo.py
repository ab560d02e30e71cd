"""Shampoo: steepest descent under a learned norm (Kronecker-factored preconditioning)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import divide, where_nonzero
from normax._checks import COUNT, NONNEGATIVE, POSITIVE, POSITIVE_COUNT, UNIT, check_args
from normax._registry import get_norm

_F32 = jnp.float32


def block_dims(m: int, n: int, block_size: int | None) -> tuple[int, int]:
  """The block shape ``(b_m, b_n)`` of an ``m×n`` matrix: each side capped at ``block_size``."""
  # At least 1: a zero-length side makes zero blocks of size 1 (a zero-size leaf, no factor).
  if block_size is None:
    return max(m, 1), max(n, 1)
  return max(min(m, block_size), 1), max(min(n, block_size), 1)


def to_blocks(x: jax.Array, block_size: int | None) -> jax.Array:
  """``(..., m, n) -> (..., m/b_m, n/b_n, b_m, b_n)``, zero-padding each side to a multiple."""
  *lead, m, n = x.shape
  bm, bn = block_dims(m, n, block_size)
  pm, pn = -(-m // bm) * bm, -(-n // bn) * bn
  if (pm, pn) != (m, n):
    x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, pm - m), (0, pn - n)])
  x = x.reshape(*lead, pm // bm, bm, pn // bn, bn)
  return jnp.swapaxes(x, -3, -2)


def from_blocks(xb: jax.Array, m: int, n: int) -> jax.Array:
  """Inverse of :func:`to_blocks` for an original ``m×n`` matrix (drops the padding)."""
  *lead, nbm, nbn, bm, bn = xb.shape
  x = jnp.swapaxes(xb, -3, -2).reshape(*lead, nbm * bm, nbn * bn)
  return x[..., :m, :n]


def factor_shapes(shape: tuple[int, ...], block_size: int | None):
  """Shapes of the left and right Kronecker factors of a leaf, blocks as batch axes."""
  *lead, m, n = shape
  bm, bn = block_dims(m, n, block_size)
  grid = (-(-m // bm), -(-n // bn))
  return (*lead, *grid, bm, bm), (*lead, *grid, bn, bn)


def mT(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, -1, -2)


def matrix_leaves(params: Any, what: str) -> None:
  """Raises a ``ValueError`` naming every leaf of rank < 2 (Kronecker factors need a matrix)."""
  bad = [
    (jax.tree_util.keystr(path), jnp.shape(leaf))
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    if jnp.ndim(leaf) < 2
  ]
  if bad:
    listing = ", ".join(f"{p} {s}" for p, s in bad)
    raise ValueError(
      f"{what} preconditions matrices (..., fan_in, fan_out); these leaves have rank < 2:"
      f" {listing}. Give them another transform with optax.partition, e.g. label them"
      " 'bias' and use normax.scale_by_lmo('bias_rms') there."
    )


def static_count(x: Any) -> Any:
  """A block size or interval as a Python ``int`` (``None`` stays ``None``): shapes need one."""
  if x is None:
    return None
  try:
    return int(x)
  except (TypeError, jax.errors.ConcretizationTypeError):
    raise TypeError(
      f"block sizes and intervals set shapes and must be static numbers, got {x!r}; under"
      " optax.inject_hyperparams list them in static_args."
    ) from None


def _frobenius(mat: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(mat), axis=(-2, -1), keepdims=True))


def inverse_root(mat: jax.Array, exponent: float, eps: float) -> jax.Array:
  """``(A + ε‖A‖_F I)^{-exponent}`` of symmetric PSD matrices by eigendecomposition.

  Directions with a zero regularized eigenvalue (e.g. ``A = 0``) map to 0, not inf.
  """
  w, q = jnp.linalg.eigh(mat)
  w = jnp.maximum(w, 0.0)
  den = w + eps * _frobenius(mat)[..., 0]
  inv = jnp.where(den > 0, jnp.where(den > 0, den, 1.0) ** -exponent, 0.0)
  return (q * inv[..., None, :]) @ mT(q)


def inverse_root_newton(mat: jax.Array, p: int, eps: float, steps: int) -> jax.Array:
  """``(A + ε‖A‖_F I)^{-1/p}`` by the coupled Newton iteration (matmuls only).

  With ``A_ε = A + ε‖A‖_F I`` scaled by ``z = (1+p) / (2‖A_ε‖_F)`` (so its
  eigenvalues lie in ``(0, (1+p)/2]``, inside the region of convergence):
  ``M₀ = z A_ε``, ``H₀ = z^{1/p} I``, then ``T = ((p+1) I - M)/p``,
  ``M ← T^p M``, ``H ← H T``; ``M → I`` and ``H → A_ε^{-1/p}``. A zero
  matrix gives zero.
  """
  n = mat.shape[-1]
  eye = jnp.broadcast_to(jnp.eye(n, dtype=mat.dtype), mat.shape)
  reg = mat + eps * _frobenius(mat) * eye
  norm = _frobenius(reg)
  z = jnp.where(norm > 0, (1 + p) / jnp.where(norm > 0, norm, 1.0), 0.0) / 2

  def body(_, mh):
    m, h = mh
    t = ((p + 1) * eye - m) / p
    tp = t
    for _ in range(p - 1):
      tp = tp @ t
    return tp @ m, h @ t

  m0 = z * reg
  h0 = z ** (1.0 / p) * eye
  return jax.lax.fori_loop(0, steps, body, (m0, h0))[1]


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


#: ``log2`` scale of a factor that has seen only zero gradients: finite, so that the
#: exponent differences below never meet ``-inf - (-inf)``.
EMPTY_SCALE = -1e30


def block_max(gb: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(gb / m, log2 m)`` with ``m`` the largest entry of each block (:data:`EMPTY_SCALE` for
  a zero block): the blocks at unit scale, and their scale. NaN/inf stay visible."""
  m = jnp.max(jnp.abs(gb), axis=(-2, -1), keepdims=True)
  safe = jnp.where(m > 0, m, 1)
  log_m = jnp.where(m > 0, jnp.log2(safe), EMPTY_SCALE)[..., 0, 0]
  return divide(gb, safe), log_m


def accumulate(factor, log_scale, outer, log_outer, decay, weight):
  """``2^s'·F' = decay·2^s·F + weight·2^o·outer`` with ``s'`` the larger of the two terms'
  exponents, so both coefficients are at most 1: no over- or underflow at any scale."""

  def log2(c):
    c = jnp.asarray(c, _F32)
    return jnp.where(c > 0, jnp.log2(jnp.where(c > 0, c, 1)), -jnp.inf)

  old, new = log_scale + log2(decay), log_outer + log2(weight)
  scale = jnp.maximum(old, new)
  mix = lambda e: jnp.exp2(e - scale)[..., None, None]  # noqa: E731
  return mix(old) * factor + mix(new) * outer, scale


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

    def factors(side):
      return jax.tree.map(
        lambda p: jnp.zeros(factor_shapes(jnp.shape(p), block_size)[side], _F32), params
      )

    def scales(side, value):
      return jax.tree.map(
        lambda p: jnp.full(factor_shapes(jnp.shape(p), block_size)[side][:-2], value, _F32),
        params,
      )

    return ShampooState(
      count=jnp.zeros([], jnp.int32),
      left=factors(0),
      right=factors(1),
      left_root=factors(0),
      right_root=factors(1),
      left_scale=scales(0, EMPTY_SCALE),
      right_scale=scales(1, EMPTY_SCALE),
      left_root_scale=scales(0, 0.0),
      right_root_scale=scales(1, 0.0),
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
    refresh = state.count % precondition_every == 0

    def leaf(g, left, right, left_root, right_root, ls, rs, lrs, rrs):
      m, n = g.shape[-2:]
      # The blocks at unit scale and their log2 scales: GGᵀ = 2^(2·log_m)·ĝĝᵀ. Factors and
      # roots carry their scales apart (see ShampooState), so the update is scale-free.
      gb, log_m = block_max(to_blocks(g.astype(_F32), block_size))
      left, ls = accumulate(left, ls, gb @ mT(gb), 2 * log_m, decay, weight)
      right, rs = accumulate(right, rs, mT(gb) @ gb, 2 * log_m, decay, weight)
      log_correction = jnp.log2(jnp.asarray(correction, _F32))

      def roots(_):  # (A·2^s)^(-e) = A^(-e)·2^(-e·s); ε is relative, so it scales along.
        return (
          root(left),
          root(right),
          -exponent * (ls - log_correction),
          -exponent * (rs - log_correction),
        )

      if precondition_every == 1:
        left_root, right_root, lrs, rrs = roots(None)
      else:
        left_root, right_root, lrs, rrs = jax.lax.cond(
          refresh, roots, lambda _: (left_root, right_root, lrs, rrs), None
        )
      scale = jnp.exp2(log_m + lrs + rrs)[..., None, None]
      d = from_blocks(scale * (left_root @ gb @ right_root), m, n)
      if graft_norm is not None:
        graft_norm.check(g.shape, g.dtype)
        d = d * _fro_ratio(graft_norm.dualize(g.astype(_F32)), d)
      return d.astype(g.dtype), left, right, left_root, right_root, ls, rs, lrs, rrs

    flat, treedef = jax.tree.flatten(updates)
    rest = [treedef.flatten_up_to(t) for t in state[1:]]
    outs = [leaf(*args) for args in zip(flat, *rest, strict=True)]
    if not outs:
      return updates, state._replace(count=count)
    out, *new = (treedef.unflatten(list(c)) for c in zip(*outs, strict=True))
    return out, ShampooState(count, *new)

  return optax.GradientTransformation(init_fn, update_fn)


def _fro_ratio(target: jax.Array, d: jax.Array) -> jax.Array:
  """``‖target‖_F / ‖d‖_F`` per matrix (last two axes), broadcastable against ``d``."""

  def fro(x):
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=(-2, -1), keepdims=True))

  return where_nonzero(fro(d), fro(target))
