"""``scale_by_dual_norm``: the step size of true steepest descent, per layer or modular."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._checks import NONNEGATIVE, POSITIVE, check_args
from normax._leafwise import acc_dtype, cast_scalar, evaluate, resolve_norms, resolve_scalars


class ScaleByDualNormState(NamedTuple):
  """Step count, for a sharpness schedule."""

  count: jax.Array


def _expand(x: jax.Array, ndim: int) -> jax.Array:
  """Appends singleton axes so a per-tensor value broadcasts over a leaf."""
  return jnp.reshape(x, x.shape + (1,) * (ndim - x.ndim))


def scale_by_dual_norm(
  norms: Any,
  sharpness: float | optax.Schedule = 1.0,
  *,
  modular: bool = False,
  masses: float | Any = None,
  exact: bool = True,
) -> optax.GradientTransformation:
  r"""Steepest descent direction: dualize and scale by the dual norm over ``λ``.

  Per leaf (``modular=False``, Bernstein & Newhouse Prop. 1), with
  sharpness ``λ``:

  .. math::
    g ↦ (‖g‖† / λ)·dualize(g),

  the minimizer of ``⟨g, Δ⟩ + (λ/2)‖Δ‖²`` up to sign (leading batch axes of
  a leaf are separate tensors, each with its own factor).

  With ``modular=True`` the layers ``l`` (every leaf, and every tensor of a
  stacked leaf) are combined in the weighted max norm
  ``‖W‖ = max_l ‖W_l‖_l / m_l`` with masses ``m_l``. Its dual norm is
  ``Σ_l m_l ‖G_l‖†_l``, and steepest descent under it (Prop. 7, with the
  layer scales ``s_l = 1/m_l``) is

  .. math::
    G_l ↦ (1/λ)·(Σₖ m_k·‖G_k‖†_k)·m_l·dualize_l(G_l):

  one global factor, the mass-weighted sum of the layers' dual norms, and
  each layer's own dualized direction scaled by its mass.

  Args:
    norms: Norms as in :func:`normax.scale_by_lmo` (``None`` leaves pass
      through and are left out of the modular sum).
    sharpness: ``λ > 0``, a float or an ``optax.Schedule``.
    modular: Use the modular (max) norm over all leaves.
    masses: ``m_l`` per leaf for ``modular``: ``None`` (all 1), one float,
      or a pytree of floats with the parameters' structure (or a prefix).
    exact: ``True``: ``‖g‖†`` from :meth:`normax.Norm.dual_norm` (exact, an
      SVD for spectral norms). ``False``: ``⟨g, dualize(g)⟩``, the dual norm
      that the computed direction attains: the same for exact dualizers, the
      first-order decrease actually obtained with an approximate one (e.g.
      Newton–Schulz), and no SVD. ``optax.contrib.muon(adaptive=True)``
      computes the latter.

  Returns:
    An ``optax.GradientTransformation`` with a step count in its state.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 5.0])}
    >>> tx = normax.scale_by_dual_norm("frobenius")
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["a"], u["b"]  # Frobenius is self-dual: the gradient itself
    (Array([3., 4.], dtype=float32), Array([0., 5.], dtype=float32))
    >>> tx = normax.scale_by_dual_norm("frobenius", modular=True)
    >>> u, _ = tx.update(g, tx.init(g))
    >>> u["a"], u["b"]  # (5 + 5) · g_l / ‖g_l‖
    (Array([6., 8.], dtype=float32), Array([ 0., 10.], dtype=float32))

  References:
    Bernstein & Newhouse, *Old Optimizer, New Norm: An Anthology*, 2024,
    Prop. 1 (steepest descent under a norm) and Prop. 7 (combining layer
    norms by a max: the modular norm); Large et al., *Scalable Optimization
    in the Modular Norm*, 2024 (masses).
  """

  check_args(
    "normax.scale_by_dual_norm", sharpness=(sharpness, POSITIVE), masses=(masses, NONNEGATIVE)
  )

  def init_fn(params):
    del params
    return ScaleByDualNormState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    flat, treedef = jax.tree.flatten(updates)
    resolved = resolve_norms(norms, updates)
    lam = evaluate(sharpness, state.count)
    if masses is None:
      ms = [1.0] * len(flat)
    else:
      ms = [1.0 if m is None else m for m in resolve_scalars(masses, updates, state.count, "mass")]
    duals, dirs = [], []
    for n, g in zip(resolved, flat, strict=True):
      if n is None:
        duals.append(None)
        dirs.append(None)
        continue
      direction = n.dualize(g).astype(acc_dtype(g.dtype))
      if exact:
        duals.append(n.dual_norm(g).astype(direction.dtype))
      else:
        core = n.core_axes(g.ndim)
        duals.append(jnp.sum(g.astype(direction.dtype) * direction, axis=core))
      dirs.append(direction)
    if modular:
      total = sum(
        (
          cast_scalar(m, d.dtype) * jnp.sum(d)
          for m, d in zip(ms, duals, strict=True)
          if d is not None
        ),
        start=jnp.zeros([], jnp.float32),
      )
    out = []
    for n, g, m, dual, direction in zip(resolved, flat, ms, duals, dirs, strict=True):
      if n is None:
        out.append(g)
        continue
      acc = direction.dtype
      if modular:
        factor = total.astype(acc) * cast_scalar(m, acc)
      else:
        factor = _expand(dual, g.ndim)
      out.append((factor / cast_scalar(lam, acc) * direction).astype(g.dtype))
    new_state = ScaleByDualNormState(count=optax.safe_increment(state.count))
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)
