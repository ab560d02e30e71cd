"""Scion's layer roles as ready-made ``(labels, specs)`` pairs, one per model family.

Each preset returns a label function and a plain ``dict`` ``{label: LayerSpec}``::

  roles = normax.infer_roles(model, example_batch)      # read from the computation
  labels, specs = normax.presets.scion_gpt(roles=roles)
  tx = normax.scion(2**-7, specs, labels)

With ``roles`` (:func:`normax.infer_roles`) every parameter's role and matrix
view come from the operations that consume it, so attention kernels
``(d, heads, head_dim)``, scanned stacks, expert axes and patch embeddings
get the right matrix whatever their names. Without it the preset labels by
path and shape: 2-D matrices by module name, and any other matrix-like
parameter of rank >= 3 is an error that names it (its names cannot say which
axes form the matrix) until you infer roles or state its view with a
:class:`normax.Rule`.

Edit the dict to change a norm or a radius (``specs["hidden"] =
normax.LayerSpec(normax.Spectral(steps=6), radius=8.0)``); pass ``rules=`` to
put your own rules in front of the preset's path rules.

The roles follow Pethick et al. (2025), Sec. 5 and Table 2: a one-hot input
(token embedding) gets ``ColNorm`` (or ``Sign(normalized=False)``), image
inputs and hidden matrices ``Spectral``, conv kernels ``SpectralConv``, the
output head ``Sign`` and biases and normalization gains ``BiasRMS``.

A preset's radii are one set for the model family it names: radii tuned for
one family (a tied-embedding GPT, say) are not a recipe for another (an
untied one), because which layer carries which scale differs. Each preset
says where its radii come from and what they were measured against (the
results page of the documentation). Radius and learning rate trade off (in
the unconstrained mode only their product matters), so retune the learning
rate when changing a radius: tune both on a narrow proxy model, then reuse
them at width.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from normax._base import Norm
from normax._labels import LabelFn, label_by_path
from normax._norms import BiasRMS, ColNorm, Sign
from normax._roles import Roles
from normax._rules import Rule
from normax._spec import LayerSpec
from normax._spectral import CONV_PATH, Spectral, SpectralConv

#: Globs naming an output layer: a module called ``head``, ``lm_head``,
#: ``cls_head``, ``classifier`` or ``logits`` (whole path components: not
#: ``multihead`` or ``pre_logits``; its matrices only).
HEAD_PATTERNS: tuple[str, ...] = (
  "head/*",
  "lm_head/*",
  "cls_head/*",
  "classifier/*",
  "logits/*",
)
#: Globs naming a bias or a normalization gain at any rank (a scanned stack
#: of biases has rank 2); every other rank-0/1 parameter is a bias too.
BIAS_PATTERNS: tuple[str, ...] = ("*bias", "*scale")


# Shapes and paths the presets refuse to guess a label for (see Rule's error).
_RANK3 = (
  "These parameters have rank >= 3, and their names cannot say which axes form the"
  " matrix: an attention kernel (d, heads, head_dim) maps d to heads·head_dim, an"
  " output projection (heads, head_dim, d) the reverse, a scanned stack (layers, d_in,"
  " d_out) holds one matrix per layer, a conv kernel has taps. Spectral would read the"
  " last two axes as the matrix and the rest as a stack, which is wrong for all but the"
  " last. Either read the roles from the model: labels, specs ="
  " normax.presets.{preset}(roles=normax.infer_roles(model, example_batch)); or state"
  " each one's view in a rule in front, e.g. rules=[normax.Rule('attn/*/kernel', 'hidden',"
  " view=normax.MatrixView(fan_in=-3, fan_out=(-2, -1)))] (MatrixView(-2, -1) for a"
  " scanned stack of dense kernels)."
)
_IMAGE_RANK = (
  "With spatial_dims=None a rank-4 kernel of a conv module is a 2-D conv kernel, but"
  " ranks 3 and 5 are ambiguous: rank 3 is a 1-D conv kernel (width, c_in, c_out) or a"
  " scanned stack of dense kernels (layers, d_in, d_out), rank 5 a 3-D conv kernel or a"
  " stack of 2-D ones. Pass spatial_dims (every conv kernel's number of spatial axes),"
  " or read the roles from the model: normax.presets.scion_cnn(roles=normax.infer_roles("
  "model, example_batch))."
)


def _from_roles(roles: Roles, preset: str, mapping: dict[str, str], refuse: dict[str, str]):
  """The preset's label function from inferred roles: each role kind to a preset label."""
  if not isinstance(roles, Roles):
    raise TypeError(
      f"{preset}: roles must be normax.Roles from normax.infer_roles(model, ...), got"
      f" {type(roles).__name__}."
    )
  kinds = {}
  for path, role in roles.items():
    kinds.setdefault(role.kind, path)
  for kind, why in refuse.items():
    if kind in kinds:
      raise ValueError(f"{preset}: the parameter at {kinds[kind]!r} has the role {kind!r}: {why}")
  if "head" in mapping.values() and not any(mapping.get(k) == "head" for k in kinds):
    raise ValueError(
      f"{preset}: no parameter has the head role (the product that computes the output)."
      " Infer the roles on the model's forward pass (its output the logits), or on a loss"
      " whose last product is the head; see roles.table() for what was found."
    )
  return roles.relabel({k: v for k, v in mapping.items() if k in kinds or k == "input"}), kinds


_BIAS_KINDS = {"gain": "bias", "bias": "bias", "unused": "bias"}


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


def _roles_arg(roles, rules, preset: str) -> None:
  if roles is not None and tuple(rules):
    raise TypeError(
      f"{preset}: rules= are path rules for labelling by name; with roles= every label comes"
      " from the model (change one with roles.replace(path, normax.Role(...)))."
    )


def scion_gpt(
  *,
  roles: Roles | None = None,
  head: str | Sequence[str] = HEAD_PATTERNS,
  embed: str | Sequence[str] = ("*embedding",),
  embed_norm: Norm | str = "colnorm",
  radius: float = 10.0,
  head_radius: float = 30.0,
  embed_radius: float = 3.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn | Roles, dict[str, LayerSpec]]:
  """Labels and specs for a decoder-only language model with an untied head.

  ========  =====================================  ==================  ==========
  label     role (by name: matches)                norm                radius
  ========  =====================================  ==================  ==========
  head      head (``head`` globs, 2-D)             ``Sign()``          30
  embed     embed (``embed`` globs, 2-D)           ``ColNorm()``       3
  bias      gain, bias (``*bias``, ``*scale``,     ``BiasRMS()``       1
            any rank 0/1)
  hidden    hidden (every other 2-D array)         ``Spectral()``      10
  conv      conv (with roles only)                 ``SpectralConv()``  10
  ========  =====================================  ==================  ==========

  With ``roles`` (:func:`normax.infer_roles`), labels come from the roles and
  every kernel is read in its inferred matrix view (attention kernels
  ``(d, heads, head_dim)`` as one ``d × heads·head_dim`` matrix, scanned
  stacks and expert axes as stacks); a token table that is also the head is
  an error pointing to :func:`scion_gpt_tied`. Without roles, labels come
  from paths (first match wins; your ``rules`` go first) and a parameter of
  rank >= 3 that is not a bias or gain is an error naming it, unless a rule
  in front states its view.

  The radii (embedding 3, hidden 10, head 30; learning rate ``2**-6`` at
  width 64, ``2**-7`` at width 128) were tuned with the learning rate on a
  width-64 character-level GPT (11 radius sets × 5 learning rates × 3
  seeds; the documentation's results page), starting from the Scion
  authors' set for their shallow untied GPT (embedding 1, hidden 3, head 10;
  github.com/LIONS-EPFL/scion, ``examples/shallow-nanogpt``): the winner
  keeps their ratios, ×3. There it reached 2.04 ± 0.02 nats/char, against
  2.22 for the authors' set and 2.35 for their tied 124M GPT's radii
  (hidden 50, head 3000). Normalization gains start at 1 and keep ρ = 1.

  Args:
    roles: Inferred roles (:func:`normax.infer_roles`); ``None``: label by path.
    head: Glob(s) or regex(es) matching the output layer's matrix, e.g.
      ``"lm_head/*"`` or, for Linen's unnamed layers, ``"Dense_3/*"``.
    embed: Glob(s) matching one-hot input tables (Flax ``Embed`` parameters
      are called ``embedding``; token and position embeddings both match).
    embed_norm: ``"colnorm"`` (Scion's default) or ``"sign_unnormalized"``
      (ℓ1→ℓ∞, their alternative), or any ``Norm``.
    radius: ρ of the hidden matrices (and conv kernels).
    head_radius: ρ of the head.
    embed_radius: ρ of the embedding.
    bias_radius: ρ of biases and gains.
    rules: Extra path rules tried before the preset's (not with ``roles``).

  Returns:
    ``(labels, specs)`` for ``normax.scion(learning_rate, specs, labels)``.

  Examples:
    >>> import jax.numpy as jnp, normax
    >>> params = {"embed": {"embedding": jnp.zeros((50, 8))},
    ...           "mlp": {"kernel": jnp.zeros((8, 8))},
    ...           "norm": {"scale": jnp.ones(8)},
    ...           "lm_head": {"kernel": jnp.zeros((8, 50))}}
    >>> labels, specs = normax.presets.scion_gpt()
    >>> print(normax.label_table(params, labels))
    path             shape    dtype    label
    embed/embedding  (50, 8)  float32  embed
    lm_head/kernel   (8, 50)  float32  head
    mlp/kernel       (8, 8)   float32  hidden
    norm/scale       (8,)     float32  bias
    >>> specs["head"].norm, specs["head"].radius
    (Sign(normalized=True, transpose=False, zero_init=False), 30.0)

  References:
    Pethick et al., *Training Deep Learning Models with Norm-Constrained
    LMOs*, 2025, Sec. 5, Table 2 and Appendix E; their reference code's
    shallow nanoGPT configuration.
  """
  _roles_arg(roles, rules, "scion_gpt")
  specs = {
    "embed": LayerSpec(embed_norm if embed_norm != "colnorm" else ColNorm(), embed_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  if roles is not None:
    mapping = {"embed": "embed", "head": "head", "hidden": "hidden", "conv": "conv", **_BIAS_KINDS}
    refuse = {"tied": "its token table is also the head; use normax.presets.scion_gpt_tied."}
    labels, kinds = _from_roles(roles, "scion_gpt", mapping, refuse)
    if "conv" in kinds:
      specs["conv"] = LayerSpec(SpectralConv(), radius)
    return labels, specs
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", ndim=2),
    *_role_rules(embed, "embed", ndim=2),
    *_bias_rules(),
    Rule("*", "hidden", ndim=2),
    Rule("*", None, min_ndim=3, error=_RANK3.format(preset="scion_gpt")),
  ]
  return label_by_path(label_rules, required=("head",)), specs


#: Globs naming the token table of a tied-embedding model (shared with the head).
TOKEN_PATTERNS: tuple[str, ...] = (
  "tok_embed/embedding",
  "token_embed/embedding",
  "token_embedding/embedding",
  "embed_tokens/embedding",
  "wte/embedding",
)


def scion_gpt_tied(
  *,
  roles: Roles | None = None,
  tied: str | Sequence[str] = TOKEN_PATTERNS,
  embed: str | Sequence[str] = ("*embedding",),
  radius: float = 10.0,
  head_radius: float = 10.0,
  embed_radius: float = 1.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn | Roles, dict[str, LayerSpec]]:
  """Labels and specs for a language model whose token table is also its head.

  With tied weights the ``(vocab, features)`` table ``E`` embeds tokens and
  computes the logits ``x @ Eᵀ`` (Flax ``Embed.attend``). The Scion authors
  give it the head's norm: ``Sign`` normalized by the head's fan-in,
  ``features``. By name the table gets ``Sign(transpose=True)`` (it is stored
  ``(fan_out, fan_in)`` as a head); with ``roles`` its inferred view already
  reads it as ``features × vocab`` and the norm is ``Sign()``.

  ========  ====================================  =========================  ======
  label     role (by name: matches)               norm                       radius
  ========  ====================================  =========================  ======
  head      tied (``tied`` globs, the table)      ``Sign(transpose=True)``   10
  embed     embed (other ``embed`` globs)         ``ColNorm()``              1
  bias      gain, bias (``*bias``, ``*scale``,    ``BiasRMS()``              1
            any rank 0/1)
  hidden    hidden (every other 2-D array)        ``Spectral()``             10
  conv      conv (with roles only)                ``SpectralConv()``         10
  ========  ====================================  =========================  ======

  The radii (hidden 10, tied table 10, learning rate ``2**-7``) won on a tied
  width-64 character-level GPT (3 seeds; the documentation's results page):
  2.18 ± 0.03 nats/char against 2.45 ± 0.01 for the Scion authors' radii for
  their tied 124M nanoGPT (hidden 50, tied table 60·50 = 3000, learning rate
  ``2**-12``; github.com/LIONS-EPFL/scion, README). Only these two sets were
  compared: tune further for your model.

  Args:
    roles: Inferred roles (:func:`normax.infer_roles`); ``None``: label by path.
    tied: Glob(s) matching the shared token table; at least one parameter
      must match.
    embed: Glob(s) matching other one-hot input tables (position embeddings).
    radius: ρ of the hidden matrices (and conv kernels).
    head_radius: ρ of the tied table.
    embed_radius: ρ of the other embeddings.
    bias_radius: ρ of biases and gains.
    rules: Extra path rules tried before the preset's (not with ``roles``).

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
  _roles_arg(roles, rules, "scion_gpt_tied")
  specs = {
    "embed": LayerSpec(ColNorm(), embed_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(transpose=True), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  if roles is not None:
    mapping = {"embed": "embed", "tied": "head", "hidden": "hidden", "conv": "conv", **_BIAS_KINDS}
    refuse = {"head": "the model has an untied head; use normax.presets.scion_gpt."}
    labels, kinds = _from_roles(roles, "scion_gpt_tied", mapping, refuse)
    specs["head"] = LayerSpec(Sign(), head_radius)  # The inferred view reads it features × vocab.
    if "conv" in kinds:
      specs["conv"] = LayerSpec(SpectralConv(), radius)
    return labels, specs
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(tied, "head", ndim=2),
    *_role_rules(embed, "embed", ndim=2),
    *_bias_rules(),
    Rule("*", "hidden", ndim=2),
    Rule("*", None, min_ndim=3, error=_RANK3.format(preset="scion_gpt_tied")),
  ]
  return label_by_path(label_rules, required=("head",)), specs


#: Globs naming the first dense layer of an MLP on flattened pixels.
INPUT_PATTERNS: tuple[str, ...] = ("input/*", "input_layer/*")


def scion_mlp(
  *,
  roles: Roles | None = None,
  head: str | Sequence[str] = HEAD_PATTERNS,
  input: str | Sequence[str] = INPUT_PATTERNS,
  radius: float = 2.0,
  head_radius: float = 2.0**10,
  input_radius: float = 4.0,
  bias_radius: float = 1.0,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn | Roles, dict[str, LayerSpec]]:
  """Labels and specs for an MLP on flattened pixels.

  ========  =======================================  ======================  ========
  label     role (by name: matches)                  norm                    radius
  ========  =======================================  ======================  ========
  head      head (``head`` globs, 2-D)               ``Sign()``              2**10
  input     hidden reading the inputs (``input``     ``Spectral(max=True)``  4
            globs, 2-D)
  bias      gain, bias (``*bias``, ``*scale``,       ``BiasRMS()``           1
            any rank 0/1)
  hidden    hidden (every other 2-D array)           ``Spectral()``          2
  ========  =======================================  ======================  ========

  The input layer's dimension factor is ``max(1, √(d_out/d_in))``: with
  ``d_in = 784`` pixels and ``d_out = 128`` units the plain ``√(d_out/d_in)
  = 0.40`` would make its steps 2.5× smaller than the hidden layers'. The
  norms and the head's radius are the Scion authors' MLP configuration
  (github.com/LIONS-EPFL/scion, README: radius 1 everywhere, head 2**10,
  learning rate ``2**-6``); the input and hidden radii (4 and 2, learning
  rate ``2**-8``) were tuned on Fashion-MNIST (3 seeds; the documentation's
  results page): held-out loss 0.324 ± 0.002 against 0.343 with the
  authors' radii and 0.367 with the plain input factor. At least one
  parameter must be the head and one the input layer.

  Args:
    roles: Inferred roles (:func:`normax.infer_roles`); ``None``: label by path.
    head: Glob(s) matching the classifier's matrix.
    input: Glob(s) matching the first (pixel-input) layer.
    radius: ρ of the hidden matrices.
    head_radius: ρ of the head.
    input_radius: ρ of the input layer.
    bias_radius: ρ of biases.
    rules: Extra path rules tried before the preset's (not with ``roles``).

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
  _roles_arg(roles, rules, "scion_mlp")
  specs = {
    "input": LayerSpec(Spectral(max=True), input_radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), bias_radius),
  }
  if roles is not None:
    mapping = {"head": "head", "hidden": "hidden", "input": "input", **_BIAS_KINDS}
    refuse = {
      "embed": "an MLP on pixels has no input table; use normax.presets.scion_gpt.",
      "tied": "an MLP on pixels has no input table; use normax.presets.scion_gpt_tied.",
      "conv": "a convolution kernel; use normax.presets.scion_cnn.",
    }
    labels, _ = _from_roles(roles, "scion_mlp", mapping, refuse)
    if not any(r.kind == "hidden" and r.input for _, r in roles.items()):
      raise ValueError(
        "scion_mlp: no dense kernel reads the inputs directly (the input layer); see roles.table()."
      )
    return labels, specs
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", ndim=2),
    *_role_rules(input, "input", ndim=2),
    *_bias_rules(),
    Rule("*", "hidden", ndim=2),
    Rule("*", None, min_ndim=3, error=_RANK3.format(preset="scion_mlp")),
  ]
  return label_by_path(label_rules, required=("head", "input")), specs


def scion_cnn(
  *,
  roles: Roles | None = None,
  head: str | Sequence[str] = HEAD_PATTERNS,
  spatial_dims: int | None = None,
  radius: float = 8.0,
  head_radius: float = 128.0,
  bias_radius: float | None = None,
  rules: Iterable[Rule | tuple[str, str]] = (),
) -> tuple[LabelFn | Roles, dict[str, LayerSpec]]:
  """Labels and specs for a convolutional network (or a ViT): conv kernels, dense layers, head.

  ========  =========================================  ===================  ========
  label     role (by name: matches)                    norm                 radius
  ========  =========================================  ===================  ========
  head      head (``head`` globs, 2-D)                 ``Sign()``           128
  conv      conv (a conv module's kernel: its name     ``SpectralConv()``   8
            contains "conv", rank 4 or see below)
  bias      gain, bias (``*bias``, ``*scale``,         ``BiasRMS()``        8
            any rank 0/1)
  hidden    hidden (every other 2-D array)             ``Spectral()``       8
  ========  =========================================  ===================  ========

  With ``roles`` every convolution (any layout, 1-D to 3-D, a ViT's patch
  embedding included) is recognised from its ``conv_general_dilated``, and
  dense kernels (a ViT's attention and MLP) get their inferred views; a class
  token or position table added to the activations is a bias.

  The radii (8 everywhere, head 16·8 = 128; with learning rate ``2**-4``
  and ``beta=0.5`` there) are the Scion authors' airbench CIFAR-10
  configuration (github.com/LIONS-EPFL/scion, ``examples/airbench``). On a
  small CNN on sklearn's digits (3 seeds, ``beta=0.9``, learning rate
  ``2**-7``; the documentation's results page) they reach a held-out loss of
  0.028 ± 0.004, against 0.029 ± 0.001 with radii 4 / head 1024 and 2.08
  with radii 1 / head 16.

  By name, a conv kernel is a rank >= 3 parameter of a module whose name
  contains ``conv`` (any case). Its rank is ambiguous for 3 and 5 (a 1-D
  conv or a stack of dense kernels; a 3-D conv or a stack of 2-D ones): those
  are an error until you pass ``spatial_dims`` (2 for ``Conv`` with a 2-D
  kernel), and kernels of rank >= ``spatial_dims + 2`` are conv kernels with
  their leading axes a stack. Any other parameter of rank >= 3 is an error.

  Args:
    roles: Inferred roles (:func:`normax.infer_roles`); ``None``: label by path.
    head: Glob(s) or regex(es) matching the classifier's matrix, e.g.
      ``"Dense_1/*"`` for an unnamed Linen layer.
    spatial_dims: By name: ``None``: a conv module's rank-4 kernel is an
      unstacked 2-D conv kernel, ranks 3 and 5 an error (ambiguous). An int:
      the number of spatial axes of every conv kernel.
    radius: ρ of conv kernels and hidden matrices.
    head_radius: ρ of the head.
    bias_radius: ρ of biases and gains; ``None`` uses ``radius``.
    rules: Extra path rules tried before the preset's (not with ``roles``).

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
  _roles_arg(roles, rules, "scion_cnn")
  if roles is not None and spatial_dims is not None:
    raise TypeError("scion_cnn: spatial_dims is for labelling by name; roles read every conv.")
  conv = SpectralConv() if spatial_dims is None else SpectralConv(spatial_dims=spatial_dims)
  specs = {
    "conv": LayerSpec(conv, radius),
    "hidden": LayerSpec(Spectral(), radius),
    "head": LayerSpec(Sign(), head_radius),
    "bias": LayerSpec(BiasRMS(), radius if bias_radius is None else bias_radius),
  }
  if roles is not None:
    mapping = {"conv": "conv", "head": "head", "hidden": "hidden", **_BIAS_KINDS}
    refuse = {
      "embed": "an input table; use normax.presets.scion_gpt for a model with embeddings.",
      "tied": "an input table; use normax.presets.scion_gpt_tied.",
    }
    labels, _ = _from_roles(roles, "scion_cnn", mapping, refuse)
    return labels, specs
  if spatial_dims is None:
    conv_rules = [
      Rule(CONV_PATH, "conv", ndim=4),
      Rule(CONV_PATH, None, ndim=(3, 5), error=_IMAGE_RANK),
    ]
  else:
    conv_rules = [Rule(CONV_PATH, "conv", min_ndim=spatial_dims + 2)]
  label_rules = [
    *_as_rule_list(rules),
    *_role_rules(head, "head", ndim=2),
    *conv_rules,
    *_bias_rules(),
    Rule("*", "hidden", ndim=2),
    Rule("*", None, min_ndim=3, error=_RANK3.format(preset="scion_cnn")),
  ]
  return label_by_path(label_rules, required=("head",)), specs


def _as_rule_list(rules) -> list[Rule]:
  return [r if isinstance(r, Rule) else Rule(*r) for r in rules]
