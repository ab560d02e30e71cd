"""A zoo of small models built from Flax's own modules, shaped like public architectures.

Each entry builds a model, its parameters (the tree an optimizer sees), a function
``apply(params, *inputs)`` giving its output, example inputs, and the role and matrix
view of every parameter, written by hand from the modules' definitions (Flax's
documented kernel layouts), not from normax's output. ``EXPECTED`` values are
``(kind, view)`` with ``view`` a ``normax.MatrixView`` or ``None``.

- ``mha_decoder``: a decoder LM from ``nnx.MultiHeadAttention`` (q/k/v ``(d, heads, hd)``,
  out ``(heads, hd, d)``), ``nnx.Embed`` token and position tables, RMSNorm, an untied head.
- ``einsum_gqa_tied``: grouped-query attention from ``nnx.Einsum`` (kv heads repeated), rotary-free,
  the token table tied to the head (``Embed.attend``).
- ``fused_qkv``: a fused ``(d, 3d)`` QKV ``nnx.Linear`` split with ``jnp.split``, and a
  ``nnx.LinearGeneral`` QKV ``(d, 3, heads, hd)`` indexed one part at a time.
- ``scanned_moe``: a scanned decoder (``nnx.vmap`` to build, ``nnx.scan`` to run) whose blocks
  hold attention ``(layers, d, heads, hd)`` and a mixture-of-experts MLP with an expert axis
  ``(layers, experts, d, f)`` applied by ``vmap``, and a router ``(layers, d, experts)``.
- ``routed_moe``: top-1 routed experts that receive tokens or not: scanned dropless blocks that
  sort tokens by expert and multiply with ``jax.lax.ragged_dot`` (experts ``(layers, experts, d,
  f)``), then a GShard/Switch block with a capacity-limited dispatch tensor and einsums (experts
  ``(experts, d, f)``); routers ``(d, experts)``.
- ``linen_decoder``: Linen ``nn.scan`` over blocks of ``MultiHeadDotProductAttention``
  (``DenseGeneral`` kernels), ``LayerNorm``, ``Dense``; partitioned (boxed) kernels.
- ``vit``: a ViT encoder: patch embedding ``nnx.Conv`` with stride = patch, a class token and a
  position table added, attention blocks, a hidden ``pre_logits`` layer and a head.
- ``resnet``: a Linen ResNet: 3×3 and 1×1 ``nn.Conv``, ``nn.BatchNorm`` (batch statistics are
  not parameters), a ``Dense`` head.
- ``conv1d``: a Linen 1-D conv net (kernels ``(width, c_in, c_out)``) and a dense head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

import normax

V = normax.MatrixView


@dataclasses.dataclass
class Entry:
  name: str
  params: Any  # the tree the optimizer sees
  apply: Callable  # apply(params, *inputs) -> output
  inputs: tuple
  expected: dict[str, tuple[str, Any]]
  model: Any = None  # the NNX module (for infer_roles(model, *inputs)) or the Linen module
  variables: Any = None  # Linen: the whole variables dict (params and other collections)
  per_head: dict[str, Any] = dataclasses.field(default_factory=dict)  # views under per_head


D, H, HD, F, VOCAB, T, B = 32, 4, 8, 64, 50, 6, 2


def _nnx_apply(model):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def apply(p, *inputs):
    return nnx.merge(graphdef, p, rest)(*inputs)

  return params, apply


def _tokens():
  return (jax.random.randint(jax.random.key(1), (B, T), 0, VOCAB),)


# -- decoder LM with nnx.MultiHeadAttention ------------------------------------------------------


class MhaBlock(nnx.Module):
  def __init__(self, rngs):
    self.attn_norm = nnx.RMSNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=H, in_features=D, decode=False, use_bias=True, rngs=rngs
    )
    self.mlp_norm = nnx.RMSNorm(D, rngs=rngs)
    self.up = nnx.Linear(D, F, rngs=rngs)
    self.down = nnx.Linear(F, D, rngs=rngs)

  def __call__(self, x):
    mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + self.attn(self.attn_norm(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.mlp_norm(x))))


class MhaDecoder(nnx.Module):
  def __init__(self, rngs):
    self.tok_embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.pos_embed = nnx.Embed(T, D, rngs=rngs)
    self.blocks = nnx.List([MhaBlock(rngs) for _ in range(2)])
    self.final_norm = nnx.RMSNorm(D, rngs=rngs)
    self.lm_head = nnx.Linear(D, VOCAB, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    x = self.tok_embed(tokens) + self.pos_embed(jnp.arange(tokens.shape[1]))[None]
    for block in self.blocks:
      x = block(x)
    return self.lm_head(self.final_norm(x))


def _attention_expected(prefix: str, stack: tuple[int, ...] = ()) -> tuple[dict, dict]:
  """nnx.MultiHeadAttention / Linen MultiHeadDotProductAttention: q/k/v (d, heads, hd),
  out (heads, hd, d), biases (heads, hd) and (d,)."""
  s = len(stack)
  exp, heads = {}, {}
  for name in ("query", "key", "value"):
    exp[f"{prefix}/{name}/kernel"] = ("hidden", V(s, (s + 1, s + 2), stack))
    heads[f"{prefix}/{name}/kernel"] = V(s, s + 2, stack + (s + 1,))
    exp[f"{prefix}/{name}/bias"] = ("bias", V((), (s, s + 1), stack))
  exp[f"{prefix}/out/kernel"] = ("hidden", V((s, s + 1), s + 2, stack))
  heads[f"{prefix}/out/kernel"] = V(s + 1, s + 2, stack + (s,))
  exp[f"{prefix}/out/bias"] = ("bias", V((), (s,), stack))
  return exp, heads


def mha_decoder() -> Entry:
  model = MhaDecoder(nnx.Rngs(0))
  params, apply = _nnx_apply(model)
  exp = {
    "tok_embed/embedding": ("embed", V(0, 1)),
    "pos_embed/embedding": ("embed", V(0, 1)),
    "final_norm/scale": ("gain", V((), 0)),
    "lm_head/kernel": ("head", V(0, 1)),
  }
  heads = {}
  for i in range(2):
    e, h = _attention_expected(f"blocks/{i}/attn")
    exp |= e
    heads |= h
    exp |= {
      f"blocks/{i}/attn_norm/scale": ("gain", V((), 0)),
      f"blocks/{i}/mlp_norm/scale": ("gain", V((), 0)),
      f"blocks/{i}/up/kernel": ("hidden", V(0, 1)),
      f"blocks/{i}/up/bias": ("bias", V((), 0)),
      f"blocks/{i}/down/kernel": ("hidden", V(0, 1)),
      f"blocks/{i}/down/bias": ("bias", V((), 0)),
    }
  return Entry("mha_decoder", params, apply, _tokens(), exp, model=model, per_head=heads)


# -- grouped-query attention with nnx.Einsum, tied embedding -------------------------------------


KV = 2


class GqaBlock(nnx.Module):
  def __init__(self, rngs):
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.q = nnx.Einsum("BTD,DNH->BTNH", (D, H, HD), rngs=rngs)
    self.k = nnx.Einsum("BTD,DKH->BTKH", (D, KV, HD), rngs=rngs)
    self.v = nnx.Einsum("BTD,DKH->BTKH", (D, KV, HD), rngs=rngs)
    self.o = nnx.Einsum("BTNH,NHD->BTD", (H, HD, D), rngs=rngs)
    self.mlp_norm = nnx.RMSNorm(D, rngs=rngs)
    self.gate = nnx.Einsum("BTD,DF->BTF", (D, F), rngs=rngs)
    self.up = nnx.Einsum("BTD,DF->BTF", (D, F), rngs=rngs)
    self.down = nnx.Einsum("BTF,FD->BTD", (F, D), rngs=rngs)

  def __call__(self, x):
    h = self.norm(x)
    q, k, v = self.q(h), self.k(h), self.v(h)
    k, v = jnp.repeat(k, H // KV, axis=2), jnp.repeat(v, H // KV, axis=2)
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    x = x + self.o(y)
    h = self.mlp_norm(x)
    return x + self.down(jax.nn.silu(self.gate(h)) * self.up(h))


class GqaTied(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.blocks = nnx.List([GqaBlock(rngs) for _ in range(2)])
    self.norm = nnx.RMSNorm(D, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x)
    return self.embed.attend(self.norm(x))


def einsum_gqa_tied() -> Entry:
  model = GqaTied(nnx.Rngs(0))
  params, apply = _nnx_apply(model)
  # nnx.Einsum's bias defaults to None; the kernels' layouts are in their einsum strings.
  exp = {
    "embed/embedding": ("tied", V(1, 0)),  # logits = x @ Eᵀ: d is the fan-in
    "norm/scale": ("gain", V((), 0)),
  }
  heads = {}
  for i in range(2):
    p = f"blocks/{i}"
    exp |= {
      f"{p}/norm/scale": ("gain", V((), 0)),
      f"{p}/mlp_norm/scale": ("gain", V((), 0)),
      f"{p}/q/kernel": ("hidden", V(0, (1, 2))),
      f"{p}/k/kernel": ("hidden", V(0, (1, 2))),
      f"{p}/v/kernel": ("hidden", V(0, (1, 2))),
      f"{p}/o/kernel": ("hidden", V((0, 1), 2)),
      f"{p}/gate/kernel": ("hidden", V(0, 1)),
      f"{p}/up/kernel": ("hidden", V(0, 1)),
      f"{p}/down/kernel": ("hidden", V(0, 1)),
    }
    heads |= {
      f"{p}/q/kernel": V(0, 2, (1,)),
      f"{p}/k/kernel": V(0, 2, (1,)),
      f"{p}/v/kernel": V(0, 2, (1,)),
      f"{p}/o/kernel": V(1, 2, (0,)),
    }
  return Entry("einsum_gqa_tied", params, apply, _tokens(), exp, model=model, per_head=heads)


# -- fused QKV -----------------------------------------------------------------------------------


class FusedQKV(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.qkv = nnx.Linear(D, 3 * D, use_bias=False, rngs=rngs)  # nanoGPT's c_attn
    self.proj = nnx.Linear(D, D, use_bias=False, rngs=rngs)
    self.qkv2 = nnx.LinearGeneral(D, (3, H, HD), use_bias=False, rngs=rngs)
    self.proj2 = nnx.LinearGeneral((H, HD), D, axis=(-2, -1), use_bias=False, rngs=rngs)
    self.head = nnx.Linear(D, VOCAB, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
    heads = lambda y: y.reshape(*y.shape[:2], H, HD)  # noqa: E731
    y = jax.nn.dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    x = x + self.proj(y.reshape(x.shape))
    qkv = self.qkv2(x)  # (B, T, 3, H, HD)
    y = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], is_causal=True)
    x = x + self.proj2(y)
    return self.head(x)


def fused_qkv() -> Entry:
  model = FusedQKV(nnx.Rngs(0))
  params, apply = _nnx_apply(model)
  exp = {
    "embed/embedding": ("embed", V(0, 1)),
    "qkv/kernel": ("hidden", V(0, 1, blocks=3)),  # q, k and v: three d × d matrices
    "proj/kernel": ("hidden", V(0, 1)),
    "qkv2/kernel": ("hidden", V(0, (2, 3), (1,))),  # one d × (heads·hd) matrix per part
    "proj2/kernel": ("hidden", V((0, 1), 2)),
    "head/kernel": ("head", V(0, 1)),
  }
  heads = {"qkv2/kernel": V(0, 3, (1, 2)), "proj2/kernel": V(1, 2, (0,))}
  return Entry("fused_qkv", params, apply, _tokens(), exp, model=model, per_head=heads)


# -- scanned decoder with a mixture-of-experts MLP -----------------------------------------------


E, L = 4, 3


class MoeBlock(nnx.Module):
  def __init__(self, rngs):
    self.norm = nnx.LayerNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=H, in_features=D, decode=False, use_bias=False, rngs=rngs
    )
    self.router = nnx.Linear(D, E, use_bias=False, rngs=rngs)
    init = nnx.initializers.lecun_normal()
    self.w_in = nnx.Param(init(rngs.params(), (E, D, F)))
    self.w_out = nnx.Param(init(rngs.params(), (E, F, D)))

  def __call__(self, x):
    x = x + self.attn(self.norm(x), mask=nnx.make_causal_mask(jnp.ones(x.shape[:2])))
    gates = jax.nn.softmax(self.router(x), axis=-1)  # (B, T, E): soft routing, every expert

    def expert(w_in, w_out, x):
      return jax.nn.gelu(x @ w_in) @ w_out

    outs = jax.vmap(expert, in_axes=(0, 0, None))(self.w_in[...], self.w_out[...], x)
    return x + jnp.einsum("ebtd,bte->btd", outs, gates)


class ScannedMoe(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)

    @nnx.split_rngs(splits=L)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return MoeBlock(rngs)

    self.blocks = make(rngs)
    self.head = nnx.Linear(D, VOCAB, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def body(block, x):
      return block(x)

    return self.head(body(self.blocks, self.embed(tokens)))


def scanned_moe() -> Entry:
  model = ScannedMoe(nnx.Rngs(0))
  params, apply = _nnx_apply(model)
  e, heads = _attention_expected("blocks/attn", stack=(0,))
  exp = {k: v for k, v in e.items() if not k.endswith("bias")}
  heads = dict(heads)
  exp |= {
    "embed/embedding": ("embed", V(0, 1)),
    "blocks/norm/scale": ("gain", V((), 1, (0,))),
    "blocks/norm/bias": ("bias", V((), 1, (0,))),
    "blocks/router/kernel": ("hidden", V(1, 2, (0,))),
    "blocks/w_in": ("hidden", V(2, 3, (0, 1))),  # one d × f matrix per layer and expert
    "blocks/w_out": ("hidden", V(2, 3, (0, 1))),
    "head/kernel": ("head", V(0, 1)),
  }
  return Entry("scanned_moe", params, apply, _tokens(), exp, model=model, per_head=heads)


# -- routed mixture of experts: top-1 dispatch by ragged_dot (scanned) and by capacity einsums ---


def _top1(router, h, idle):
  """Top-1 routing of tokens ``h`` (n, d): each token's expert and gate; ``idle`` experts are
  never chosen (an expert that receives no tokens)."""
  logits = router(h)
  if idle is not None:
    logits = logits.at[:, idle].set(jnp.finfo(logits.dtype).min)
  top = jnp.argmax(logits, axis=-1)
  gate = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), top[:, None], axis=1)
  return top, gate


class RaggedMoeBlock(nnx.Module):
  """Dropless top-1 MoE: tokens sorted by expert, ``jax.lax.ragged_dot`` per expert group."""

  def __init__(self, rngs, idle=None):
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.router = nnx.Linear(D, E, use_bias=False, rngs=rngs)
    init = nnx.initializers.lecun_normal()
    self.w_in = nnx.Param(init(rngs.params(), (E, D, F)))
    self.w_out = nnx.Param(init(rngs.params(), (E, F, D)))
    self.idle = idle

  def __call__(self, x):
    h = self.norm(x).reshape(-1, D)
    top, gate = _top1(self.router, h, self.idle)
    order = jnp.argsort(top)
    sizes = jnp.bincount(top, length=E).astype(jnp.int32)
    y = jax.nn.gelu(jax.lax.ragged_dot(h[order], self.w_in[...], sizes))
    y = jax.lax.ragged_dot(y, self.w_out[...], sizes)
    out = jnp.zeros_like(h).at[order].set(y) * gate
    return x + out.reshape(x.shape)


class CapacityMoeBlock(nnx.Module):
  """GShard/Switch top-1 MoE: a (tokens, experts, capacity) dispatch tensor and einsums."""

  def __init__(self, rngs, idle=None, capacity=8):
    self.router = nnx.Linear(D, E, use_bias=False, rngs=rngs)
    init = nnx.initializers.lecun_normal()
    self.w_in = nnx.Param(init(rngs.params(), (E, D, F)))
    self.w_out = nnx.Param(init(rngs.params(), (E, F, D)))
    self.idle, self.capacity = idle, capacity

  def __call__(self, x):
    h = x.reshape(-1, D)
    top, gate = _top1(self.router, h, self.idle)
    chosen = jax.nn.one_hot(top, E)  # (n, e)
    slot = (jnp.cumsum(chosen, axis=0) - 1) * chosen  # each token's place in its expert's queue
    slot = slot.astype(jnp.int32)
    dispatch = jax.nn.one_hot(slot, self.capacity) * chosen[..., None]  # (n, e, c); overflow drops
    xin = jnp.einsum("nd,nec->ecd", h, dispatch)
    y = jnp.einsum("ecf,efd->ecd", jax.nn.gelu(jnp.einsum("ecd,edf->ecf", xin, self.w_in[...])),
                   self.w_out[...])  # fmt: skip
    out = jnp.einsum("ecd,nec->nd", y, dispatch) * gate
    return x + out.reshape(x.shape)


class RoutedMoe(nnx.Module):
  def __init__(self, rngs, idle=None):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)

    @nnx.split_rngs(splits=L)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return RaggedMoeBlock(rngs, idle)

    self.blocks = make(rngs)
    self.moe = CapacityMoeBlock(rngs, idle)
    self.head = nnx.Linear(D, VOCAB, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def body(block, x):
      return block(x)

    return self.head(self.moe(body(self.blocks, self.embed(tokens))))


def routed_moe(idle: int | None = None) -> Entry:
  """Scanned dropless MoE blocks (experts ``(layers, experts, d, f)``, ragged_dot) and a
  capacity-dispatch MoE block (experts ``(experts, d, f)``, einsums); with ``idle``, that
  expert of every block receives no tokens."""
  model = RoutedMoe(nnx.Rngs(0), idle)
  params, apply = _nnx_apply(model)
  exp = {
    "embed/embedding": ("embed", V(0, 1)),
    "blocks/norm/scale": ("gain", V((), 1, (0,))),
    "blocks/router/kernel": ("hidden", V(1, 2, (0,))),  # (layers, d, experts): d × experts
    "blocks/w_in": ("hidden", V(2, 3, (0, 1))),  # one d × f matrix per layer and expert
    "blocks/w_out": ("hidden", V(2, 3, (0, 1))),
    "moe/router/kernel": ("hidden", V(0, 1)),
    "moe/w_in": ("hidden", V(1, 2, (0,))),  # one d × f matrix per expert
    "moe/w_out": ("hidden", V(1, 2, (0,))),
    "head/kernel": ("head", V(0, 1)),
  }
  return Entry("routed_moe", params, apply, _tokens(), exp, model=model)


# -- Linen: scanned decoder of MultiHeadDotProductAttention, boxed kernels -----------------------


class LinenBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    part = nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
    h = nn.LayerNorm()(x)
    h = nn.MultiHeadDotProductAttention(num_heads=H, qkv_features=D)(
      h, mask=nn.make_causal_mask(jnp.ones(x.shape[:2]))
    )
    x = x + h
    h = nn.Dense(F, kernel_init=part)(nn.LayerNorm()(x))
    return x + nn.Dense(D)(nn.gelu(h)), None


class LinenDecoder(nn.Module):
  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(VOCAB, D)(tokens)
    stack = nn.scan(
      LinenBlock,
      variable_axes={"params": 0},
      split_rngs={"params": True},
      length=2,
      metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x, _ = stack()(x, None)
    return nn.Dense(VOCAB, name="lm_head")(nn.LayerNorm()(x))


def linen_decoder() -> Entry:
  module = LinenDecoder()
  (tokens,) = _tokens()
  variables = module.init(jax.random.key(0), tokens)
  params = variables["params"]
  s = "ScanLinenBlock_0"
  e, heads = _attention_expected(f"{s}/MultiHeadDotProductAttention_0", stack=(0,))
  exp = dict(e)
  exp |= {
    "Embed_0/embedding": ("embed", V(0, 1)),
    f"{s}/LayerNorm_0/scale": ("gain", V((), 1, (0,))),
    f"{s}/LayerNorm_0/bias": ("bias", V((), 1, (0,))),
    f"{s}/LayerNorm_1/scale": ("gain", V((), 1, (0,))),
    f"{s}/LayerNorm_1/bias": ("bias", V((), 1, (0,))),
    f"{s}/Dense_0/kernel": ("hidden", V(1, 2, (0,))),
    f"{s}/Dense_0/bias": ("bias", V((), 1, (0,))),
    f"{s}/Dense_1/kernel": ("hidden", V(1, 2, (0,))),
    f"{s}/Dense_1/bias": ("bias", V((), 1, (0,))),
    "LayerNorm_0/scale": ("gain", V((), 0)),
    "LayerNorm_0/bias": ("bias", V((), 0)),
    "lm_head/kernel": ("head", V(0, 1)),
    "lm_head/bias": ("bias", V((), 0)),
  }

  def apply(p, tokens):
    return module.apply({"params": p}, tokens)

  return Entry(
    "linen_decoder", params, apply, (tokens,), exp, model=module, variables=variables,
    per_head=heads,
  )  # fmt: skip


# -- ViT: patch embedding, class token, position table -------------------------------------------


P, IMG, C, CLASSES = 4, 16, 3, 10
N = (IMG // P) ** 2


class VitBlock(nnx.Module):
  def __init__(self, rngs):
    self.norm1 = nnx.LayerNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=H, in_features=D, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(D, rngs=rngs)
    self.fc1 = nnx.Linear(D, F, rngs=rngs)
    self.fc2 = nnx.Linear(F, D, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.fc2(jax.nn.gelu(self.fc1(self.norm2(x))))


class Vit(nnx.Module):
  def __init__(self, rngs):
    self.patch_embed = nnx.Conv(C, D, kernel_size=(P, P), strides=(P, P), rngs=rngs)
    self.cls_token = nnx.Param(jnp.zeros((1, 1, D)))
    self.pos_embedding = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, N + 1, D)))
    self.blocks = nnx.List([VitBlock(rngs) for _ in range(2)])
    self.norm = nnx.LayerNorm(D, rngs=rngs)
    self.pre_logits = nnx.Linear(D, D, rngs=rngs)
    self.head = nnx.Linear(D, CLASSES, rngs=rngs)

  def __call__(self, images):
    x = self.patch_embed(images)
    x = x.reshape(x.shape[0], -1, D)
    cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, D))
    x = jnp.concatenate([cls, x], axis=1) + self.pos_embedding[...]
    for block in self.blocks:
      x = block(x)
    x = self.norm(x)[:, 0]
    return self.head(jnp.tanh(self.pre_logits(x)))


def vit() -> Entry:
  model = Vit(nnx.Rngs(0))
  params, apply = _nnx_apply(model)
  images = jax.random.normal(jax.random.key(1), (B, IMG, IMG, C))
  exp = {
    "patch_embed/kernel": ("conv", V(2, 3, spatial=(0, 1))),  # HWIO
    "patch_embed/bias": ("bias", V((), 0)),
    "cls_token": ("bias", V((), 2, (0, 1))),  # added (concatenated) to the activations
    "pos_embedding": ("bias", V((), (1, 2), (0,))),
    "norm/scale": ("gain", V((), 0)),
    "norm/bias": ("bias", V((), 0)),
    "pre_logits/kernel": ("hidden", V(0, 1)),
    "pre_logits/bias": ("bias", V((), 0)),
    "head/kernel": ("head", V(0, 1)),
    "head/bias": ("bias", V((), 0)),
  }
  heads = {}
  for i in range(2):
    p = f"blocks/{i}"
    e, h = _attention_expected(f"{p}/attn")
    exp |= e
    heads |= h
    exp |= {
      f"{p}/norm1/scale": ("gain", V((), 0)),
      f"{p}/norm1/bias": ("bias", V((), 0)),
      f"{p}/norm2/scale": ("gain", V((), 0)),
      f"{p}/norm2/bias": ("bias", V((), 0)),
      f"{p}/fc1/kernel": ("hidden", V(0, 1)),
      f"{p}/fc1/bias": ("bias", V((), 0)),
      f"{p}/fc2/kernel": ("hidden", V(0, 1)),
      f"{p}/fc2/bias": ("bias", V((), 0)),
    }
  return Entry("vit", params, apply, (images,), exp, model=model, per_head=heads)


# -- Linen ResNet --------------------------------------------------------------------------------


class ResBlock(nn.Module):
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.features, (3, 3), strides=self.strides, use_bias=False)(x)
    y = nn.relu(nn.BatchNorm(use_running_average=False)(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
    y = nn.BatchNorm(use_running_average=False)(y)
    if x.shape != y.shape:
      x = nn.Conv(self.features, (1, 1), strides=self.strides, use_bias=False, name="proj")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), use_bias=False)(x))
    x = ResBlock(8)(x)
    x = ResBlock(16, strides=2)(x)
    return nn.Dense(CLASSES)(x.mean(axis=(1, 2)))


def resnet() -> Entry:
  module = ResNet()
  images = jax.random.normal(jax.random.key(1), (B, 8, 8, C))
  variables = module.init(jax.random.key(0), images)
  params = variables["params"]
  conv = ("conv", V(2, 3, spatial=(0, 1)))
  exp = {
    "Conv_0/kernel": conv,
    "Dense_0/kernel": ("head", V(0, 1)),
    "Dense_0/bias": ("bias", V((), 0)),
  }
  for b in ("ResBlock_0", "ResBlock_1"):
    exp |= {f"{b}/Conv_0/kernel": conv, f"{b}/Conv_1/kernel": conv}
    for n in ("BatchNorm_0", "BatchNorm_1"):
      exp |= {f"{b}/{n}/scale": ("gain", V((), 0)), f"{b}/{n}/bias": ("bias", V((), 0))}
  exp["ResBlock_1/proj/kernel"] = conv

  def apply(p, images):
    out, _ = module.apply(
      {"params": p, "batch_stats": variables["batch_stats"]}, images, mutable=["batch_stats"]
    )
    return out

  return Entry("resnet", params, apply, (images,), exp, model=module, variables=variables)


# -- Linen 1-D conv ------------------------------------------------------------------------------


class Conv1d(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (5,))(x))
    x = nn.relu(nn.Conv(16, (3,), feature_group_count=1)(x))
    return nn.Dense(CLASSES)(x.mean(axis=1))


def conv1d() -> Entry:
  module = Conv1d()
  signal = jax.random.normal(jax.random.key(1), (B, 20, C))
  params = module.init(jax.random.key(0), signal)["params"]
  conv = lambda: ("conv", V(1, 2, spatial=(0,)))  # noqa: E731
  exp = {
    "Conv_0/kernel": conv(),
    "Conv_0/bias": ("bias", V((), 0)),
    "Conv_1/kernel": conv(),
    "Conv_1/bias": ("bias", V((), 0)),
    "Dense_0/kernel": ("head", V(0, 1)),
    "Dense_0/bias": ("bias", V((), 0)),
  }
  return Entry(
    "conv1d", params, lambda p, x: module.apply({"params": p}, x), (signal,), exp, model=module
  )


MODELS = (
  mha_decoder, einsum_gqa_tied, fused_qkv, scanned_moe, routed_moe, linen_decoder, vit, resnet,
  conv1d,
)  # fmt: skip
ZOO = {f.__name__: f for f in MODELS}
