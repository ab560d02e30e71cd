"""NorMuon's per-neuron normalization of an orthogonalized update."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from normax._base import l2_norm
from normax._checks import NONNEGATIVE, UNIT, check_args
from normax._leafwise import acc_dtype, cast_scalar, evaluate, leaf_paths


class ScaleByNeuronRmsState(NamedTuple):
  """Step count and the per-neuron second moments ``v`` (shape ``(..., 1, fan_out)``).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> normax.scale_by_neuron_rms().init({"w": jnp.ones((3, 4, 8))}).nu["w"].shape
    (3, 1, 8)
  """

  count: jax.Array
  nu: optax.Updates


def _check_matrix(x, path):
  if jnp.ndim(x) < 2:
    raise ValueError(
      f"normax.scale_by_neuron_rms needs matrices (..., fan_in, fan_out); got shape"
      f" {jnp.shape(x)} at {path!r}. Apply it to matrix leaves only (normax.muon(...,"
      " normuon=True) does)."
    )


def scale_by_neuron_rms(
  b2: float | optax.Schedule = 0.95, eps: float = 1e-10
) -> optax.GradientTransformation:
  r"""NorMuon: divides each output neuron of the update by its RMS, norm preserved.

  For an update ``O`` of shape ``(..., fan_in, fan_out)`` (a Flax kernel; in
  NorMuon an orthogonalized momentum), with ``v`` one second moment per
  output neuron (column ``j``, averaged over the fan-in axis):

  .. math::
    v_j \leftarrow b_2 v_j + (1-b_2)\, \tfrac{1}{d_{in}} \textstyle\sum_i O_{ij}^2, \qquad
    Ô_{ij} = \frac{O_{ij}}{\sqrt{v_j} + ε}, \qquad
    \text{output} = Ô\, \frac{\|O\|_F}{\|Ô\|_F + ε}.

  Orthogonalized updates have equal singular values but uneven row norms;
  this evens the per-neuron step sizes (as Adam does per entry) and then
  restores the Frobenius norm of ``O``, so the update's size is Muon's. ``v``
  starts at zero and needs no bias correction: the final rescaling cancels
  any common factor of ``v``. Leading axes are a batch (each matrix its own
  ``‖·‖_F``). Computed in at least float32; ``v`` is stored in float32.

  Args:
    b2: EMA factor of the second moments, float or schedule.
    eps: Added to ``√v`` and to ``‖Ô‖_F``.

  Returns:
    An ``optax.GradientTransformation`` with state :class:`ScaleByNeuronRmsState`.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> o = jnp.array([[1.0, 0.1], [1.0, -0.1]])  # column 1 is 10x smaller
    >>> tx = normax.scale_by_neuron_rms(b2=0.0)
    >>> u, _ = tx.update(o, tx.init(o))
    >>> [round(float(v), 4) for v in jnp.linalg.norm(u, axis=0)]  # equal columns
    [1.005, 1.005]
    >>> bool(jnp.allclose(jnp.linalg.norm(u), jnp.linalg.norm(o)))  # ‖u‖_F = ‖o‖_F
    True

  References:
    Li et al., *NorMuon: Making Muon more efficient and scalable*, 2025
    (arXiv:2510.05491), Algorithm 1 and the authors' reference code
    ``normuon_update``.
  """

  check_args("normax.scale_by_neuron_rms", b2=(b2, UNIT), eps=(eps, NONNEGATIVE))

  def init_fn(params):
    for path, p in zip(leaf_paths(params), jax.tree.leaves(params), strict=True):
      _check_matrix(p, path)
    nu = jax.tree.map(lambda p: jnp.zeros(p.shape[:-2] + (1, p.shape[-1]), jnp.float32), params)
    return ScaleByNeuronRmsState(count=jnp.zeros([], jnp.int32), nu=nu)

  def update_fn(updates, state, params=None):
    del params
    beta = evaluate(b2, state.count)
    flat, treedef = jax.tree.flatten(updates)
    nus = treedef.flatten_up_to(state.nu)
    out, new_nu = [], []
    for path, o, nu in zip(leaf_paths(updates), flat, nus, strict=True):
      _check_matrix(o, path)
      acc = acc_dtype(o.dtype)
      x = o.astype(acc)
      bb = cast_scalar(beta, jnp.float32)
      nu = bb * nu + (1 - bb) * jnp.mean(jnp.square(x), axis=-2, keepdims=True).astype(nu.dtype)
      e = cast_scalar(eps, acc)
      y = x / (jnp.sqrt(nu).astype(acc) + e)
      y = y * (l2_norm(x, (-2, -1)) / (l2_norm(y, (-2, -1)) + e))
      out.append(y.astype(o.dtype))
      new_nu.append(nu)
    new_state = ScaleByNeuronRmsState(
      count=optax.safe_increment(state.count), nu=treedef.unflatten(new_nu)
    )
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)
