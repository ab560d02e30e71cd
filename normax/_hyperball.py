"""Hyperball: weights and updates kept at a fixed norm (the MuonH / Muon-Hyperball step)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import divide
from normax._checks import NONNEGATIVE, POSITIVE, check_args
from normax._leafwise import acc_dtype, cast_scalar, evaluate, leaf_paths, resolve_norms


class HyperballState(NamedTuple):
  """Step count (learning-rate schedules) and each weight's radius ``R``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.hyperball(0.1).init({"w": 2 * jnp.eye(4)}).radius["w"]  # ‖2·I‖_F
    Array(4., dtype=float32)
  """

  count: jax.Array
  radius: optax.Updates


def _expand(x: jax.Array, ndim: int) -> jax.Array:
  return jnp.reshape(x, x.shape + (1,) * (ndim - x.ndim))


def hyperball(
  learning_rate: float | optax.Schedule,
  radius: float | None = None,
  *,
  norm: Any = "frobenius",
) -> optax.GradientTransformation:
  r"""Steps on the sphere ``‖W‖ = R``: normalized update, then renormalized weight.

  Replaces weight decay and the learning-rate scaling at the end of a chain.
  With ``u`` the incoming (gradient-aligned) update and ``γ`` the learning rate:

  .. math::
    W \leftarrow R\, \frac{W - γ R\, u/\|u\|}{\|W - γ R\, u/\|u\|\|},

  so every weight keeps the norm ``R`` and every step moves it by ``γR``
  before the renormalization: the angular step is ``≈ γ``, whatever the
  width or depth. ``R`` is each weight's norm at ``init`` (``radius=None``)
  or the given ``radius``. Under the Frobenius norm (default) the
  renormalization is :func:`normax.project` onto the sphere (the nearest
  point); under another norm (``"spectral"``: ``‖·‖`` is normax's
  ``Spectral().norm``, exact) it is the radial rescaling ``W·R/‖W‖``. The
  norm is taken per matrix (leading axes are a batch); zero weights or
  updates stay zero. Returns ``W_new - W``, so it needs ``params``.

  Args:
    learning_rate: ``γ``, float or schedule.
    radius: ``R`` for every weight; ``None`` (default) keeps each weight's
      norm at ``init``.
    norm: The norm (a :class:`normax.Norm` or name, a pytree of them, or a
      callable) in which ``R`` is measured.

  Returns:
    An ``optax.GradientTransformation`` with state :class:`HyperballState`.

  Examples:
    >>> import jax.numpy as jnp, optax, normax
    >>> w = jnp.array([[3.0, 0.0], [0.0, 4.0]])  # ‖w‖_F = 5
    >>> tx = normax.hyperball(0.1)
    >>> state = tx.init(w)
    >>> u, state = tx.update(jnp.ones((2, 2)), state, w)
    >>> w = optax.apply_updates(w, u)
    >>> float(jnp.linalg.norm(w))  # still 5
    5.0

  References:
    Wen et al., *Fantastic Pretraining Optimizers and Where to Find Them II:
    Hyperball Optimization*, 2026 (arXiv:2606.16899), and the Muon-Hyperball
    of NVIDIA's ``emerging_optimizers``.
  """

  check_args(
    "normax.hyperball", learning_rate=(learning_rate, NONNEGATIVE), radius=(radius, POSITIVE)
  )

  def radii(params):
    flat, treedef = jax.tree.flatten(params)
    norms = resolve_norms(norm, params)
    out = []
    for n, w, path in zip(norms, flat, leaf_paths(params), strict=True):
      if n is None:
        raise ValueError(f"normax.hyperball: no norm for the parameter at {path!r}.")
      size = n.norm(w.astype(acc_dtype(w.dtype)))
      concrete = not isinstance(size, jax.core.Tracer) and jnp.size(w) > 0  # (Empty: no sphere.)
      if radius is None and concrete and bool(jnp.any(size == 0)):
        raise ValueError(
          f"normax.hyperball: the weight at {path!r} (shape {jnp.shape(w)}) has norm 0 at"
          " init, so its sphere has radius 0 and it would stay 0. Initialize it nonzero, or"
          " pass radius= (then it leaves 0 along its first update)."
        )
      out.append(size if radius is None else jnp.full_like(size, radius))
    return treedef.unflatten(out)

  def init_fn(params):
    return HyperballState(count=jnp.zeros([], jnp.int32), radius=radii(params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "normax.hyperball needs the parameters: call tx.update(grads, state, params)."
      )
    lr = evaluate(learning_rate, state.count)
    flat, treedef = jax.tree.flatten(updates)
    flat_p = treedef.flatten_up_to(params)
    rs = treedef.flatten_up_to(state.radius)
    norms = resolve_norms(norm, updates)
    out = []
    for n, u, w, r in zip(norms, flat, flat_p, rs, strict=True):
      acc = acc_dtype(u.dtype)
      uf, wf = u.astype(acc), w.astype(acc)
      r = _expand(r.astype(acc), u.ndim)
      size = _expand(n.norm(uf), u.ndim)
      step = uf * divide(r, jnp.where(size == 0, 1, size))  # r/size first: no overflow.
      new = wf - cast_scalar(lr, acc) * step
      new = n.project(new, r, sphere=True) if n.name == "frobenius" else _radial(n, new, r)
      # A zero update moves nothing (the renormalization alone would round).
      out.append(jnp.where(size == 0, 0, new - wf).astype(u.dtype))
    new_state = HyperballState(count=optax.safe_increment(state.count), radius=state.radius)
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def _radial(norm, w: jax.Array, r: jax.Array) -> jax.Array:
  size = _expand(norm.norm(w), w.ndim)
  return w * divide(r, jnp.where(size == 0, 1, size))
