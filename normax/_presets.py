"""Scion's layer roles as ready-made ``(labels, specs)`` pairs, one per model family.

Each preset returns a label function (from :func:`normax.label_by_path`) and
a plain ``dict`` ``{label: LayerSpec}``, so::

  labels, specs = normax.presets.scion_gpt()
  tx = normax.scion(2**-6, specs, labels)

Edit the dict to change a norm or a radius (``specs["hidden"] =
normax.LayerSpec(normax.Spectral(steps=6), radius=8.0)``); pass ``rules=`` to
put your own rules in front of the preset's.

The roles follow Pethick et al. (2025), Sec. 5 and Table 2: a one-hot input
(token embedding) gets ``ColNorm`` (or ``Sign(normalized=False)``), image
inputs and hidden matrices ``Spectral``, conv kernels ``SpectralConv``, the
output head ``Sign`` and biases and normalization gains ``BiasRMS``.

A preset's radii are one set for the model family it names: radii tuned for
one family (a tied-embedding GPT, say) are not a recipe for another (an
untied one), because which layer carries which scale differs. Each preset
says where its radii come from and which measurement in this repository
backs them (``results/``, produced by ``examples/compare.py``). Radius and
learning rate trade off (in the unconstrained mode only their product
matters), so retune the learning rate when changing a radius; the procedure
is in the README: tune the learning rate and the radii on a narrow proxy
model, then reuse them at width.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from normax._base import Norm
from normax._labels import LabelFn, Rule, label_by_path
from normax._norms import BiasRMS, ColNorm, Sign
from normax._spec import LayerSpec
from normax._spectral import CONV_PATH, Spectral, SpectralConv

#: Globs naming an output layer: a module called ``head``, ``lm_head``,
#: ``cls_head``, ``classifier`` or ``logits`` (its matrices only).
HEAD_PATTERNS: tuple[str, ...] = ("*head/*", "head/*", "*classifier/*", "*logits/*")
#: Globs naming a bias or a normalization gain at any rank (a scanned stack
#: of biases has rank 2); every other rank-0/1 parameter is a bias too.
BIAS_PATTERNS: tuple[str, ...] = ("*bias", "*scale")


# Shapes and paths the presets refuse to guess a label for (see Rule's error).
_GPT_CONV = (
  "These look like convolution kernels (their module's name contains 'conv'), and"
  " scion_gpt has no conv role: as 'hidden' each spatial tap would be orthogonalized"
  " on its own. Give them one, e.g. rules=[('*conv*/kernel', 'conv')] and"
  " specs['conv'] = normax.LayerSpec(normax.SpectralConv(), radius=...)."
)
_IMAGE_RANK = (
  "With spatial_dims=None a rank-4 array is a 2-D conv kernel, but ranks 3 and 5 are"
  " ambiguous: rank 3 is a 1-D conv kernel (width, c_in, c_out) or a scanned stack of"
  " dense kernels (layers, d_in, d_out), rank 5 a 3-D conv kernel or a stack of 2-D"
  " ones. Pass spatial_dims (every conv kernel's number of spatial axes: arrays of"
  " rank >= spatial_dims + 2 are conv kernels, any extra leading axes a stack, and"
  " lower ranks dense), or put rules for these paths in front."
)


def _globs(patterns: str | re.Pattern | Iterable[str | re.Pattern] | None) -> tuple:
  if patterns is None:
    return ()
  if isinstance(patterns, str | re.Pattern):
    return (patterns,)
  return tuple(patterns)


def _role_rules(patterns, label: str, ndim=None, min_ndim=None) -> list[Rule]:
  return [Rule(p, label, ndim=ndim, min_ndim=min_ndim) for p in _globs(patterns)]


def _bias_rules() -> list[Rule]:
  return _role_rules(BIAS_PATTERNS, "bias") + [Rule("*", "bias", ndim=(0, 1))]


def scion_gpt(
  *,
  head: str | Sequence[str] = HEAD_PATTERNS,
  embed: str | Sequence[str] = ("*embedding",),
  embed_norm: Norm | str = "colnorm",
  radius: float = 10.0,
  head_radius: float = 30.0,
  embed_radius: float = 3.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn, dict[str, LayerSpec]]:
  """Labels and specs for a decoder-only language model with an untied head.

  Rules, in order (first match wins; your ``rules`` go first):

  ========  ====================================  ==================  ==========
  label     matches                               norm                radius
  ========  ====================================  ==================  ==========
  head      ``head`` globs, rank >= 2             ``Sign()``          30
  embed     ``embed`` globs, rank >= 2            ``ColNorm()``       3
  bias      ``*bias``, ``*scale``, any rank 0/1   ``BiasRMS()``       1
  hidden    every other rank >= 2 array           ``Spectral()``      10
  ========  ====================================  ==================  ==========

  The radii (embedding 3, hidden 10, head 30; learning rate ``2**-6`` at
  width 64, ``2**-7`` at width 128) were tuned with the learning rate on a
  width-64 character-level GPT in this repository
  (``results/shakespeare_proxy``: 11 radius sets × 5 learning rates × 3
  seeds), starting from the Scion authors' set for their shallow
  untied GPT (embedding 1, hidden 3, head 10; github.com/LIONS-EPFL/scion,
  ``examples/shallow-nanogpt``): the winner keeps their ratios, ×3. On the
  proxy it reached 2.04 ± 0.02 nats/char, against 2.22 for the authors' set
  and 2.35 for the tied 124M GPT's radii (hidden 50, head 3000) that an
  earlier version of this preset used. Normalization gains start at 1 and
  keep ρ = 1. For a model whose embedding is also its head use
  :func:`scion_gpt_tied`.

  Scanned layer stacks need nothing special: their kernels (rank 3) are
  hidden matrices batched over the layer axis. At least one parameter must
  match ``head``, so a misnamed output layer is an error, not a silently
  spectral head; and a rank >= 3 array in a module whose name contains
  ``conv`` (any case) is an error, not a conv kernel orthogonalized tap by
  tap.

  Args:
    head: Glob(s) or regex(es) matching the output layer's matrix, e.g.
      ``"lm_head/*"`` or, for Linen's unnamed layers, ``"params/Dense_3/*"``.
    embed: Glob(s) matching one-hot input tables (Flax ``Embed`` parameters
      are called ``embedding``; token and position embeddings both match).
    embed_norm: ``"colnorm"`` (Scion's default) or ``"sign_unnormalized"``
      (ℓ1→ℓ∞, their alternative), or any ``Norm``.
    radius: ρ of the hidden matrices.
    head_radius: ρ of the head.
    embed_radius: ρ of the embedding.
    bias_radius: ρ of biases and gains.
    rules: Extra rules tried before the preset's.

  Returns:
    ``(labels, specs)`` for ``normax.scion(learning_rate, specs, labels)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"embed": {"embedding": jnp.zeros((50, 8))},
    ...           "blocks": {"mlp": {"kernel": jnp.zeros((2, 8, 8))},
    ...                      "norm": {"scale": jnp.ones((2, 8))}},
    ...           "lm_head": {"kernel": jnp.zeros((8, 50))}}
    >>> labels, specs = normax.presets.scion_gpt()
    >>> print(normax.label_table(params, labels))
    path               shape      dtype    label
    blocks/mlp/kernel  (2, 8, 8)  float32  hidden
    blocks/norm/scale  (2, 8)     float32  bias
    embed/embedding    (50, 8)    float32  embed
    lm_head/kernel     (8, 50)    float32  head
    >>> specs["head"]
    LayerSpec(norm=Sign(normalized=True, transpose=False, zero_init=False), radius=30.0, decay=None)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Sec. 5, Table 2 and Appendix E; their reference code's
    shallow nanoGPT configuration.
  """
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", min_ndim=2),
    *_role_rules(embed, "embed", min_ndim=2),
    *_bias_rules(),
    Rule(CONV_PATH, None, min_ndim=3, error=_GPT_CONV),
    Rule("*", "hidden", min_ndim=2),
  ]
  specs = {
    "embed": LayerSpec(embed_norm if embed_norm != "colnorm" else ColNorm(), embed_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  return label_by_path(label_rules, required=("head",)), specs


#: Globs naming the token table of a tied-embedding model (shared with the head).
TOKEN_PATTERNS: tuple[str, ...] = (
  "*tok_embed/embedding",
  "*token_embed*/embedding",
  "*embed_tokens/embedding",
  "*wte/embedding",
)


def scion_gpt_tied(
  *,
  tied: str | Sequence[str] = TOKEN_PATTERNS,
  embed: str | Sequence[str] = ("*embedding",),
  radius: float = 10.0,
  head_radius: float = 10.0,
  embed_radius: float = 1.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn, dict[str, LayerSpec]]:
  """Labels and specs for a language model whose token table is also its head.

  With tied weights the ``(vocab, features)`` table ``E`` embeds tokens and
  computes the logits ``x @ Eᵀ`` (Flax ``Embed.attend``). The Scion authors
  give it the head's norm: ``Sign`` normalized by the head's fan-in,
  ``features`` — here ``Sign(transpose=True)``, since the table is stored
  ``(fan_out, fan_in)`` as a head.

  ========  ====================================  =========================  ======
  label     matches                               norm                       radius
  ========  ====================================  =========================  ======
  head      ``tied`` globs (the token table)      ``Sign(transpose=True)``   10
  embed     other ``embed`` globs (positions)     ``ColNorm()``              1
  bias      ``*bias``, ``*scale``, any rank 0/1   ``BiasRMS()``              1
  hidden    every other rank >= 2 array           ``Spectral()``             10
  ========  ====================================  =========================  ======

  The radii (hidden 10, tied table 10, learning rate ``2**-7``) won on a tied
  width-64 character-level GPT in this repository
  (``results/shakespeare_tied``, 3 seeds): 2.18 ± 0.03 nats/char against
  2.45 ± 0.01 for the Scion authors' radii for their tied 124M nanoGPT
  (hidden 50, tied table 60·50 = 3000, learning rate ``2**-12``;
  github.com/LIONS-EPFL/scion, README). Only these two sets were compared:
  tune further for your model (see the README's procedure).

  Args:
    tied: Glob(s) matching the shared token table; at least one parameter
      must match.
    embed: Glob(s) matching other one-hot input tables (position
      embeddings).
    radius: ρ of the hidden matrices.
    head_radius: ρ of the tied table.
    embed_radius: ρ of the other embeddings.
    bias_radius: ρ of biases and gains.
    rules: Extra rules tried before the preset's.

  Returns:
    ``(labels, specs)`` for ``normax.scion(learning_rate, specs, labels)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"tok_embed": {"embedding": jnp.zeros((50, 8))},
    ...           "pos_embed": {"embedding": jnp.zeros((16, 8))},
    ...           "mlp": {"kernel": jnp.zeros((8, 8))}}
    >>> labels, specs = normax.presets.scion_gpt_tied()
    >>> print(normax.label_table(params, labels, specs))
    path                 shape    dtype    label   norm                  radius  decay
    mlp/kernel           (8, 8)   float32  hidden  spectral              10      default
    pos_embed/embedding  (16, 8)  float32  embed   colnorm               1       default
    tok_embed/embedding  (50, 8)  float32  head    sign(transpose=True)  10      default

  References:
    Pethick et al., 2025, Sec. 5 and Appendix E; their reference code's
    nanoGPT configuration (weight sharing).
  """
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(tied, "head", min_ndim=2),
    *_role_rules(embed, "embed", min_ndim=2),
    *_bias_rules(),
    Rule("*", "hidden", min_ndim=2),
  ]
  specs = {
    "embed": LayerSpec(ColNorm(), embed_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(transpose=True), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  return label_by_path(label_rules, required=("head",)), specs


#: Globs naming the first dense layer of an MLP on flattened pixels.
INPUT_PATTERNS: tuple[str, ...] = ("input/*", "*/input/*", "*input_layer/*")


def scion_mlp(
  *,
  head: str | Sequence[str] = HEAD_PATTERNS,
  input: str | Sequence[str] = INPUT_PATTERNS,
  radius: float = 2.0,
  head_radius: float = 2.0**10,
  input_radius: float = 4.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn, dict[str, LayerSpec]]:
  """Labels and specs for an MLP on flattened pixels.

  ========  =======================================  ======================  ========
  label     matches                                  norm                    radius
  ========  =======================================  ======================  ========
  head      ``head`` globs, rank >= 2                ``Sign()``              2**10
  input     ``input`` globs, rank 2                  ``Spectral(max=True)``  4
  bias      ``*bias``, ``*scale``, any rank 0/1      ``BiasRMS()``           1
  hidden    every other rank >= 2 array              ``Spectral()``          2
  ========  =======================================  ======================  ========

  The input layer's dimension factor is ``max(1, √(d_out/d_in))``: with
  ``d_in = 784`` pixels and ``d_out = 128`` units the plain ``√(d_out/d_in)
  = 0.40`` would make its steps 2.5× smaller than the hidden layers'. The
  norms and the head's radius are the Scion authors' MLP configuration
  (github.com/LIONS-EPFL/scion, README: radius 1 everywhere, head 2**10,
  learning rate ``2**-6``); the input and hidden radii (4 and 2, learning
  rate ``2**-8``) were tuned on Fashion-MNIST in this repository
  (``results/fashion_mnist``, 3 seeds): held-out loss 0.324 ± 0.002 against
  0.343 with the authors' radii and 0.367 with the plain input factor.
  At least one parameter must match ``head`` and one ``input``.

  Args:
    head: Glob(s) matching the classifier's matrix.
    input: Glob(s) matching the first (pixel-input) layer.
    radius: ρ of the hidden matrices.
    head_radius: ρ of the head.
    input_radius: ρ of the input layer.
    bias_radius: ρ of biases.
    rules: Extra rules tried before the preset's.

  Returns:
    ``(labels, specs)`` for ``normax.scion(learning_rate, specs, labels)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"input": {"kernel": jnp.zeros((784, 128)), "bias": jnp.zeros(128)},
    ...           "hidden": {"kernel": jnp.zeros((128, 128))},
    ...           "head": {"kernel": jnp.zeros((128, 10))}}
    >>> labels, specs = normax.presets.scion_mlp()
    >>> print(normax.label_table(params, labels, specs))
    path           shape       dtype    label   norm                radius  decay
    head/kernel    (128, 10)   float32  head    sign                1024    default
    hidden/kernel  (128, 128)  float32  hidden  spectral            2       default
    input/bias     (128,)      float32  bias    bias_rms            1       default
    input/kernel   (784, 128)  float32  input   spectral(max=True)  4       default

  References:
    Pethick et al., 2025, Sec. 5 and Appendix E; their reference code's MLP
    configuration.
  """
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", min_ndim=2),
    *_role_rules(input, "input", ndim=2),
    *_bias_rules(),
    Rule("*", "hidden", min_ndim=2),
  ]
  specs = {
    "input": LayerSpec(Spectral(max=True), input_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  return label_by_path(label_rules, required=("head", "input")), specs


def scion_cnn(
  *,
  head: str | Sequence[str] = HEAD_PATTERNS,
  spatial_dims: int | None = None,
  radius: float = 8.0,
  head_radius: float = 128.0,
  bias_radius: float | None = None,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn, dict[str, LayerSpec]]:
  """Labels and specs for a convolutional network: conv kernels, dense layers, head.

  Rules, in order (first match wins; your ``rules`` go first):

  ========  =======================================  ===================  ========
  label     matches                                  norm                 radius
  ========  =======================================  ===================  ========
  head      ``head`` globs, rank >= 2                ``Sign()``           128
  conv      rank-4 arrays (a 2-D conv kernel)        ``SpectralConv()``   8
  bias      ``*bias``, ``*scale``, any rank 0/1      ``BiasRMS()``        8
  hidden    every other rank >= 2 array              ``Spectral()``       8
  ========  =======================================  ===================  ========

  The radii (8 everywhere, head 16·8 = 128; with learning rate ``2**-4``
  and ``beta=0.5`` there) are the Scion authors' airbench CIFAR-10
  configuration (github.com/LIONS-EPFL/scion, ``examples/airbench``). On a
  small CNN on sklearn's digits in this repository (``results/digits_cnn``,
  3 seeds, ``beta=0.9``, learning rate ``2**-7``) they reach a held-out loss
  of 0.028 ± 0.004, against 0.029 ± 0.001 with radii 4 / head 1024 and 2.08
  with radii 1 / head 16.

  A conv kernel is recognised by rank, which is ambiguous for ranks 3 and 5 (a
  1-D conv or a stack of dense kernels; a 3-D conv or a stack of 2-D ones):
  those are an error until you pass ``spatial_dims`` (2 for ``Conv`` with a
  2-D kernel), and kernels of rank >= ``spatial_dims + 2`` are conv kernels
  with their leading axes as a batch, lower ranks dense.

  Args:
    head: Glob(s) or regex(es) matching the classifier's matrix, e.g.
      ``"params/Dense_1/*"`` for an unnamed Linen layer.
    spatial_dims: ``None``: every rank-4 array is an unstacked 2-D conv
      kernel, and rank-3 and rank-5 arrays are an error (ambiguous). An int:
      the number of spatial axes of every conv kernel.
    radius: ρ of conv kernels and hidden matrices.
    head_radius: ρ of the head.
    bias_radius: ρ of biases and gains; ``None`` uses ``radius``.
    rules: Extra rules tried before the preset's.

  Returns:
    ``(labels, specs)`` for ``normax.scion(learning_rate, specs, labels)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"conv": {"kernel": jnp.zeros((3, 3, 1, 8)), "bias": jnp.zeros(8)},
    ...           "dense": {"kernel": jnp.zeros((72, 32))},
    ...           "head": {"kernel": jnp.zeros((32, 10))}}
    >>> labels, specs = normax.presets.scion_cnn()
    >>> print(normax.label_table(params, labels, specs))
    path          shape         dtype    label   norm           radius  decay
    conv/bias     (8,)          float32  bias    bias_rms       8       default
    conv/kernel   (3, 3, 1, 8)  float32  conv    spectral_conv  8       default
    dense/kernel  (72, 32)      float32  hidden  spectral       8       default
    head/kernel   (32, 10)      float32  head    sign           128     default

  References:
    Pethick et al., 2025, Sec. 5, Table 2 and Appendix E; their reference
    code's airbench configuration.
  """
  if spatial_dims is None:
    conv_rules = [Rule("*", "conv", ndim=4), Rule("*", None, ndim=(3, 5), error=_IMAGE_RANK)]
    conv = SpectralConv()
  else:
    conv_rules = [Rule("*", "conv", min_ndim=spatial_dims + 2)]
    conv = SpectralConv(spatial_dims=spatial_dims)
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", min_ndim=2),
    *conv_rules,
    *_bias_rules(),
    Rule("*", "hidden", min_ndim=2),
  ]
  specs = {
    "conv": LayerSpec(conv, radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), radius if bias_radius is None else bias_radius),
  }
  return label_by_path(label_rules, required=("head",)), specs


def _as_rule_list(rules) -> list[Rule]:
  return [r if isinstance(r, Rule) else Rule(*r) for r in rules]
