"""Projection onto norm balls and spheres (nGPT-style weight normalization)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._leafwise import acc_dtype, check_nonnegative, resolve_norms, resolve_scalars
from normax._matrix_view import matrix_views


def project(params: optax.Params, norms: Any, radius: float | Any = 1.0, *, sphere: bool = False):
  r"""Returns ``params`` with each leaf projected onto its norm ball (or sphere).

  Per leaf ``w`` with norm ``‖·‖`` and radius ``r``, ``norm.project(w, r, sphere)``
  (:meth:`normax.Norm.project`, which each norm defines for its own geometry):

  - ``Spectral``/``SpectralConv``: singular values clipped to the ball's
    bound, ``σ_i ← min(σ_i, r·√(d_out/d_in))`` (exact SVD; the nearest point
    in Frobenius distance); on the sphere every nonzero ``σ_i`` is set to it.
  - ``ColNorm`` / ``RowNorm`` / ``BiasRMS`` / ``Frobenius`` (and ``L1ToLp(2)``,
    ``LpToLinf(2)``): each row / column / vector / tensor whose ℓ2 norm
    exceeds its bound is scaled down to it (sphere: scaled onto it, the nGPT
    normalization), the nearest point of the ball.
  - ``Sign``: entries clipped to ``±r/d_in`` (``±r`` unnormalized); sphere:
    ``r/d_in · sign(w)``.
  - Other norms (a norm of your own included, unless it defines ``project``):
    radial retraction ``w · min(1, r/‖w‖)`` (sphere: ``w · r/‖w‖``), on the
    ball but not always its nearest point.

  Zero tensors, rows and columns stay zero. Computed in at least float32 and
  cast back to each leaf's dtype.

  Args:
    params: The parameters.
    norms: Norms as in :func:`normax.scale_by_lmo` (``None``: leave as is).
    radius: ``r``, a float or a pytree of floats (schedules: use
      :func:`normax.project_to_norm_ball`).
    sphere: Project onto the sphere ``‖w‖ = r`` instead of the ball.

  Returns:
    Projected parameters, same structure and dtypes.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> w = jnp.array([[3.0, 4.0, 0.0, 0.0], [0.3, 0.4, 0.0, 0.0]])
    >>> normax.project(w, "colnorm", radius=1.0)  # rows to ℓ2 ≤ √4 · 1
    Array([[1.2, 1.6, 0. , 0. ],
           [0.3, 0.4, 0. , 0. ]], dtype=float32)

  References:
    Loshchilov et al., *nGPT: Normalized Transformer with Representation
    Learning on the Hypersphere*, 2024; Pethick et al., 2025, Sec. 3
    (norm-ball constraints).
  """
  check_nonnegative(radius, "normax.project radius")
  flat, treedef = jax.tree.flatten(params)
  resolved = resolve_norms(norms, params)
  radii = resolve_scalars(radius, params, jnp.zeros([], jnp.int32), "radius")
  out = [
    w if n is None or r is None else n.project(w, r, sphere)
    for n, w, r in zip(resolved, flat, radii, strict=True)
  ]
  return treedef.unflatten(out)


class ProjectToNormBallState(NamedTuple):
  """Step count, for radius schedules."""

  count: jax.Array


def project_to_norm_ball(
  norms: Any,
  radius: float | optax.Schedule | Any = 1.0,
  *,
  sphere: bool = False,
  views: Any = None,
) -> optax.GradientTransformation:
  r"""Turns the update into one that lands on the norm ball (or sphere).

  Optax transforms return updates, so this one returns

  .. math::
    u ↦ P(x + u) − x,

  with ``P`` the per-leaf projection of :func:`normax.project`. Put it
  **last** in a chain, after the learning rate, so that
  ``optax.apply_updates(x, u)`` gives ``P(x - γ·step)``::

    tx = optax.chain(normax.sign_descent(0.1), normax.project_to_norm_ball("bias_rms", 1.0))

  Or apply :func:`normax.project` to the new parameters yourself.

  Args:
    norms: Norms as in :func:`normax.scale_by_lmo` (``None``: no projection).
    radius: ``r``, a float, an ``optax.Schedule``, or a pytree of them.
    sphere: Project onto the sphere ``‖w‖ = r``.
    views: The :class:`normax.MatrixView` of each leaf, as in
      :func:`normax.scale_by_lmo`: a leaf is projected in its matrix layout.

  Returns:
    An ``optax.GradientTransformation`` that needs ``params`` in ``update``.

  Examples:
    >>> import jax.numpy as jnp, optax, normax
    >>> tx = optax.chain(optax.sgd(1.0), normax.project_to_norm_ball("frobenius", 1.0))
    >>> params = jnp.array([0.6, 0.0])
    >>> u, _ = tx.update(jnp.array([0.0, -0.8]), tx.init(params), params)
    >>> optax.apply_updates(params, u)  # (0.6, 0.8) has norm 1: already inside
    Array([0.6, 0.8], dtype=float32)
    >>> u, _ = tx.update(jnp.array([-2.4, -4.0]), tx.init(params), params)
    >>> optax.apply_updates(params, u)  # (3, 4) scaled back to norm 1
    Array([0.6, 0.8], dtype=float32)

  References:
    Loshchilov et al., *nGPT*, 2024 (normalize weights after each step).
  """

  check_nonnegative(radius, "normax.project_to_norm_ball radius")

  def init_fn(params):
    del params
    return ProjectToNormBallState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.project_to_norm_ball needs the parameters: call tx.update(grads, state, params)."
      )
    flat_u, treedef = jax.tree.flatten(updates)
    flat_p = treedef.flatten_up_to(params)
    found = None if views is None else matrix_views(updates, views)
    resolved = resolve_norms(norms, updates, found)
    radii = resolve_scalars(radius, updates, state.count, "radius")
    out = []
    found = found or [None] * len(flat_u)
    for n, r, u, p, v in zip(resolved, radii, flat_u, flat_p, found, strict=True):
      if n is None or r is None:
        out.append(u)
        continue
      new = (p.astype(acc_dtype(u.dtype)) + u.astype(acc_dtype(u.dtype))).astype(p.dtype)
      projected = n.project(new if v is None else v.to(new), r, sphere)
      projected = projected if v is None else v.back(projected, new.shape)
      out.append(projected.astype(u.dtype) - p.astype(u.dtype))
    return treedef.unflatten(out), ProjectToNormBallState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
