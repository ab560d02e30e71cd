"""Each attention head's largest pre-softmax logit: what QK-Clip reads from the forward pass.

:func:`max_logits` computes it from a layer's queries and keys;
:func:`attention_with_max_logits` wraps an attention function of Flax's
``nnx.MultiHeadAttention`` or Linen's ``MultiHeadDotProductAttention`` so that
the module records it with ``sow`` on every call. Flax is imported only when a
module records.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from normax._checks import POSITIVE, check_args


def max_logits(
  query: jax.Array,
  key: jax.Array,
  *,
  mask: jax.Array | None = None,
  is_causal: bool = False,
  scale: float | None = None,
  precision: Any = jax.lax.Precision.HIGHEST,
) -> jax.Array:
  r"""The largest pre-softmax attention logit of each query head, over the batch and positions.

  With queries ``q`` ``[batch..., T, H, d]`` and keys ``k`` ``[batch..., S, K, d]``
  (Flax's and ``jax.nn.dot_product_attention``'s layout; ``K`` divides ``H``):

  .. math::
    S^h_{\max} = \max_{b,\ i,\ j\ \text{unmasked}}\ s\,⟨q_{b,i,h},\ k_{b,j,g(h)}⟩,
    \qquad g(h) = \lfloor h / (H/K) \rfloor,

  with ``s = 1/√d`` unless ``scale`` is given: the grouped-query convention of
  Flax and JAX (query heads ``h`` of one contiguous group share key head
  ``g(h)``). This is the quantity Kimi K2's QK-Clip bounds. Additive attention
  biases (ALiBi, relative positions) are not included: QK-Clip's rescaling of
  the projections does not scale them. Masked entries do not count; a head
  whose every entry is masked gets ``-inf``. No gradient flows through it.

  Args:
    query: ``[batch..., q_length, heads, head_dim]``.
    key: ``[batch..., kv_length, kv_heads, head_dim]``.
    mask: Boolean, broadcastable to ``[batch..., heads, q_length, kv_length]``
      (Flax's convention); ``False`` entries are excluded.
    is_causal: Exclude the entries above the diagonal (``j > i``), as
      ``jax.nn.dot_product_attention(is_causal=True)`` does.
    scale: The logit scale; ``None``: ``1/√head_dim``.
    precision: Of the ``q·k`` products (exact float32 products by default).

  Returns:
    A ``(heads,)`` array (float32, or wider if the inputs are).

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> q = jnp.zeros((1, 3, 2, 4)).at[0, 2, 1].set(2.0)  # (batch, T, heads, head_dim)
    >>> k = jnp.ones((1, 3, 2, 4))
    >>> normax.max_logits(q, k, is_causal=True)  # head 1: 2·4/√4 = 4
    Array([0., 4.], dtype=float32)

  References:
    Kimi Team, *Kimi K2: Open Agentic Intelligence*, 2025, Sec. 2.1 (the
    per-head max logit ``S^h_max`` of QK-Clip).
  """
  check_args("normax.max_logits", scale=(scale, POSITIVE))
  q, k = jnp.asarray(query), jnp.asarray(key)
  if q.ndim < 3 or k.ndim != q.ndim or q.shape[:-3] != k.shape[:-3]:
    raise ValueError(
      f"max_logits: query {q.shape} and key {k.shape} must be [batch..., length, heads,"
      " head_dim] with the same batch dimensions (Flax's attention layout)."
    )
  heads, depth = q.shape[-2:]
  kv_heads = k.shape[-2]
  if k.shape[-1] != depth or heads % kv_heads:
    raise ValueError(
      f"max_logits: query {q.shape} and key {k.shape} need the same head_dim and a number of"
      f" key heads ({kv_heads}) that divides the number of query heads ({heads})."
    )
  dtype = jnp.promote_types(jnp.promote_types(q.dtype, k.dtype), jnp.float32)
  q = jax.lax.stop_gradient(q).astype(dtype)
  k = jax.lax.stop_gradient(k).astype(dtype)
  group = heads // kv_heads
  q = q.reshape(q.shape[:-2] + (kv_heads, group, depth))
  logits = jnp.einsum("...tkgd,...skd->...kgts", q, k, precision=precision)
  logits = logits.reshape(logits.shape[:-4] + (heads,) + logits.shape[-2:])
  logits = logits * (1.0 / math.sqrt(depth) if scale is None else scale)
  valid = jnp.ones(logits.shape, bool)
  if mask is not None:
    valid = jnp.broadcast_to(jnp.asarray(mask, bool), logits.shape)
  if is_causal:
    t, s = logits.shape[-2:]
    valid = valid & jnp.broadcast_to(jnp.tril(jnp.ones((t, s), bool)), logits.shape)
  logits = jnp.where(valid, logits, -jnp.inf)
  axes = tuple(range(logits.ndim - 3)) + (logits.ndim - 2, logits.ndim - 1)
  return jnp.max(logits, axis=axes)


# The keyword arguments Flax's MultiHeadAttention modules pass to their attention function, each
# with the value that means "not used": an attention function that lacks one may drop it then.
_UNUSED = {
  "bias": None,
  "mask": None,
  "broadcast_dropout": True,
  "dropout_rng": None,
  "dropout_rate": 0.0,
  "deterministic": False,
  "dtype": None,
  "precision": None,
  "is_causal": False,
  "force_fp32_for_softmax": False,
  "qk_attn_weights_einsum": None,
  "attn_weights_value_einsum": None,
}


def _unused(value: Any, default: Any) -> bool:
  if default is None:
    return value is None
  return isinstance(value, bool | int | float) and value == default


def _is_linen(module: Any) -> bool:
  try:
    import flax.linen as nn
  except ImportError:  # pragma: no cover - flax is optional
    return False
  return isinstance(module, nn.Module)


def _default_attention(linen: bool) -> Callable:
  if linen:
    import flax.linen as nn

    return nn.dot_product_attention
  from flax import nnx

  return nnx.dot_product_attention


def _sow(module: Any, name: str, value: Callable[[], jax.Array]) -> None:
  """Sows ``value()`` into ``module``: Linen's ``"intermediates"``; NNX's ``nnx.Intermediate``
  only inside ``nnx.capture`` (which marks the modules it captures with ``__captures__``), so that
  tracing the model elsewhere (``normax.infer_roles``, evaluation) records nothing."""
  if _is_linen(module):
    module.sow("intermediates", name, value())
    return
  from flax import nnx

  if not hasattr(nnx, "capture") or hasattr(module, "__captures__"):
    module.sow(nnx.Intermediate, name, value())


def attention_with_max_logits(
  attention_fn: Callable | None = None, *, name: str = "max_logits"
) -> Callable:
  """An attention function for Flax's attention modules that also records each head's max logit.

  Pass it as ``attention_fn`` to ``nnx.MultiHeadAttention`` or Linen's
  ``MultiHeadDotProductAttention`` and call the module with
  ``sow_weights=True``: it computes :func:`normax.max_logits` of the queries
  and keys (mask and ``is_causal`` applied) and sows it under ``name``
  (NNX: ``nnx.Intermediate``, recorded only inside ``nnx.capture(...,
  nnx.Intermediate)``, which returns them; Linen: the ``"intermediates"``
  collection, with ``mutable=["intermediates"]``), then returns
  ``attention_fn``'s output. The attention weights themselves are not sown.
  Without ``sow_weights=True`` the module passes no module to sow into, and
  nothing is recorded; nor is anything outside ``nnx.capture``, so tracing
  the model (:func:`normax.infer_roles`, evaluation) leaves it as it is.

  The max logit costs one more ``q·kᵀ`` product per layer (in float32, no
  gradient); the attention's own computation is unchanged.

  Args:
    attention_fn: The attention to run; ``None``: Flax's
      ``dot_product_attention`` (NNX's, or Linen's for a Linen module).
    name: The name the max logits are sown under.

  Returns:
    A function with the signature Flax's attention modules call.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> from flax import nnx
    >>> attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False,
    ...                               attention_fn=normax.attention_with_max_logits(),
    ...                               rngs=nnx.Rngs(0))
    >>> x = jax.random.normal(jax.random.key(0), (1, 5, 8))
    >>> y, sown = nnx.capture(lambda m, x: m(x, sow_weights=True), nnx.Intermediate)(attn, x)
    >>> sown["max_logits"][0].shape  # one max logit per head (sow keeps a tuple)
    (2,)
  """

  def attention(
    query,
    key,
    value,
    bias=None,
    mask=None,
    broadcast_dropout=True,
    dropout_rng=None,
    dropout_rate=0.0,
    deterministic=False,
    dtype=None,
    precision=None,
    module=None,
    is_causal=False,
    force_fp32_for_softmax=False,
    qk_attn_weights_einsum=None,
    attn_weights_value_einsum=None,
  ):
    kwargs = dict(
      bias=bias,
      mask=mask,
      broadcast_dropout=broadcast_dropout,
      dropout_rng=dropout_rng,
      dropout_rate=dropout_rate,
      deterministic=deterministic,
      dtype=dtype,
      precision=precision,
      is_causal=is_causal,
      force_fp32_for_softmax=force_fp32_for_softmax,
      qk_attn_weights_einsum=qk_attn_weights_einsum,
      attn_weights_value_einsum=attn_weights_value_einsum,
    )
    if module is not None:
      _sow(module, name, lambda: max_logits(query, key, mask=mask, is_causal=is_causal))
    linen = _is_linen(module) or (
      force_fp32_for_softmax
      or qk_attn_weights_einsum is not None
      or attn_weights_value_einsum is not None
    )
    fn = attention_fn if attention_fn is not None else _default_attention(linen)
    accepted = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
      return fn(query, key, value, **kwargs)
    passed = {}
    for arg, value_ in kwargs.items():
      if arg in accepted:
        passed[arg] = value_
      elif not _unused(value_, _UNUSED[arg]):
        raise TypeError(
          f"attention_with_max_logits: the module passed {arg}={value_!r}, which the attention"
          f" function {getattr(fn, '__name__', fn)!r} does not accept."
        )
    return fn(query, key, value, **passed)

  return attention


__all__ = ["attention_with_max_logits", "max_logits"]
