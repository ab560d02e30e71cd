"""Momentum: the exponential moving average of gradients that Scion and Muon share."""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._checks import UNIT, check_args, renamed
from normax._leafwise import acc_dtype, cast_scalar, check_updates, evaluate


class MomentumState(NamedTuple):
  """State of :func:`momentum`: the step count and the average ``d``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> state = normax.momentum(0.9, mu_dtype=jnp.bfloat16).init({"w": jnp.ones((2, 2))})
    >>> int(state.count), state.trace["w"].dtype
    (0, dtype(bfloat16))
  """

  count: jax.Array
  trace: optax.Updates


@renamed("normax.momentum", dtype="mu_dtype=")
def momentum(
  beta: float | optax.Schedule = 0.9,
  *,
  nesterov: bool = False,
  init: Literal["zeros", "first_gradient"] = "zeros",
  bias_correction: bool = False,
  mu_dtype=None,
) -> optax.GradientTransformation:
  r"""Exponential moving average of the gradients (Scion's and Muon's momentum).

  With gradient ``g_t`` and ``β`` (Scion's ``α = 1 - β``):

  .. math::
    d_t = β·d_(t−1) + (1 − β)·g_t,

    output = β·d_t + (1 − β)·g_t  with Nesterov,  d_t  otherwise.

  ``init="zeros"`` starts from ``d_0 = 0``; ``init="first_gradient"`` sets
  ``d_1 = g_1`` (no warm-up from zero). ``bias_correction`` divides by
  ``1 - β^t`` as Adam does; with Nesterov the two terms get their own
  corrections, ``β d_t / (1-β^{t+1}) + (1-β) g_t / (1-β^t)`` (the NAdam form
  that ``optax.contrib.muon`` uses).

  The output is gradient-aligned and has each gradient leaf's dtype; the
  state ``d`` is stored in ``mu_dtype`` (e.g. ``jnp.bfloat16`` halves its
  memory), arithmetic runs in at least float32.

  Args:
    beta: ``β`` in ``[0, 1)``, a float or an ``optax.Schedule`` of the step.
    nesterov: Output the Nesterov look-ahead ``β d_t + (1-β) g_t``.
    init: ``"zeros"`` or ``"first_gradient"``.
    bias_correction: Divide by ``1 - β^t`` (Adam-style).
    mu_dtype: dtype of the stored average (``optax``'s name); ``None`` keeps each
      parameter's.

  Returns:
    An ``optax.GradientTransformation`` with state :class:`MomentumState`.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> tx = normax.momentum(0.5)
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> d, state = tx.update({"w": jnp.array([2.0, -4.0])}, state)
    >>> d["w"]
    Array([ 1., -2.], dtype=float32)
    >>> d, state = tx.update({"w": jnp.array([2.0, -4.0])}, state)
    >>> d["w"]
    Array([ 1.5, -3. ], dtype=float32)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Algorithm 1 (``d ← (1-α)d + αg``); Jordan et al., *Muon*,
    2024 (Nesterov variant).
  """
  if init not in ("zeros", "first_gradient"):
    raise ValueError(f"momentum init must be 'zeros' or 'first_gradient', got {init!r}.")
  check_args("normax.momentum", beta=(beta, UNIT))
  state_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    return MomentumState(
      count=jnp.zeros([], jnp.int32), trace=optax.tree.zeros_like(params, dtype=state_dtype)
    )

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    b = evaluate(beta, state.count)
    first = state.count == 0

    def leaf(g, d):
      acc = acc_dtype(g.dtype)
      bb = cast_scalar(b, acc)
      gf, df = g.astype(acc), d.astype(acc)
      new = bb * df + (1 - bb) * gf
      if init == "first_gradient":
        new = jnp.where(first, gf, new)
      if nesterov:
        if bias_correction:
          t = count.astype(acc)
          out = bb * new / (1 - bb ** (t + 1)) + (1 - bb) * gf / (1 - bb**t)
        else:
          out = bb * new + (1 - bb) * gf
      elif bias_correction:
        out = new / (1 - bb ** count.astype(acc))
      else:
        out = new
      return out.astype(g.dtype), new.astype(d.dtype)

    flat, treedef = jax.tree.flatten(updates)
    try:
      traces = treedef.flatten_up_to(state.trace)
    except (ValueError, TypeError):
      traces = None
    if traces is None or any(g.shape != d.shape for g, d in zip(flat, traces, strict=True)):
      check_updates(updates, state.trace, "normax.momentum")  # Names the paths.
    pairs = [leaf(g, d) for g, d in zip(flat, traces, strict=True)]
    out = treedef.unflatten([p[0] for p in pairs])
    trace = treedef.unflatten([p[1] for p in pairs])
    return out, MomentumState(count=count, trace=trace)

  return optax.GradientTransformation(init_fn, update_fn)
