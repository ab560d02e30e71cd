"""The grids of optimizer comparisons that ``examples/compare.py --preset NAME`` runs.

Data only: each preset names a task (``image``: ``image_classification.py``, ``gpt``:
``char_gpt.py``), a base config (overrides of the task's ``Config``) and a list of ``Sweep``s
(optimizer -> learning rates, × widths, warmups, batch sizes, radii, settings, seeds, budgets).
The measurements they produced are in docs/experiments.md and docs/results.md; each comment says
why a grid holds what it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

#: Scion, unconstrained Scion, normax's and optax's Muon, AdamW: every grid's first optimizers.
ALL_OPTIMIZERS = ("scion", "uscion", "muon", "optax_muon", "adamw")


def pow2(lo: int, hi: int) -> tuple[float, ...]:
  """``(2**lo, 2**(lo+1), ..., 2**hi)``."""
  return tuple(2.0**e for e in range(lo, hi + 1))


@dataclasses.dataclass
class Sweep:
  """One block of the grid: the product of its optimizers' learning rates and the other axes.

  ``None`` in ``widths``, ``batch_sizes``, ``radii`` or ``steps`` means the task's default
  (the base config's). ``radii`` are strings ``"label=value,..."`` for the task's ``radii``
  setting (Scion's per-label radii, e.g. ``"hidden=3,head=10"``). A warmup below 1 is a
  fraction of the run's steps (``0.1``: 10%), else a number of steps. ``settings`` sweeps any
  other fields of the task's Config, ``{field: values}`` (e.g. ``{"b2": (0.95, 0.999)}``;
  one value fixes the field for this sweep only). ``steps`` are training budgets, with
  ``eval_every`` scaled in proportion. With ``same_examples``, a run at batch size ``b`` takes
  ``steps · base / b`` steps (``base`` the base config's batch size), so every batch size sees
  the same number of examples. Every point runs once per seed.
  """

  lrs: dict[str, Sequence[float]]  # optimizer -> learning rates
  widths: Sequence[int | None] = (None,)
  warmups: Sequence[float] = (0,)
  batch_sizes: Sequence[int | None] = (None,)
  radii: Sequence[str | None] = (None,)
  seeds: Sequence[int] = (0,)
  same_examples: bool = True
  settings: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
  steps: Sequence[int | None] = (None,)


# Each optimizer's learning rates: powers of 2 bracketing its best on a one-seed grid run first
# (widened where the best landed on an edge). A run's time grows with the width cubed on a CPU
# (Newton–Schulz dominates Scion's and Muon's steps), so the image grids keep 500 steps and
# widths up to 256.
IMAGE_LRS = {
  "scion": pow2(-10, -5),
  "uscion": pow2(-9, -4),
  "muon": pow2(-8, -4),
  "optax_muon": (2**-6,),
  "adamw": pow2(-10, -6),
}
GPT_LRS = {
  "scion": pow2(-8, -4),
  "uscion": pow2(-9, -4),
  "muon": pow2(-7, -3),
  "optax_muon": (2**-5,),
  "adamw": pow2(-10, -6),
}
# Muon's variants, Shampoo and SOAP (the protocol fixed before the runs): four powers of 2
# around the rate of their parent, Muon's best for NorMuon and AOL, AdamW's best for the ones
# whose step has Adam's scale (consistent-RMS Muon, Shampoo grafted to sign descent, SOAP); the
# learning-rate-free methods run once, at their multiplier 1 (no sweep).
IMAGE_VARIANT_LRS = {
  "normuon": pow2(-8, -5),
  "muon_aol": pow2(-8, -5),
  "muon_rms": pow2(-10, -7),
  "shampoo": pow2(-10, -7),
  "soap": pow2(-10, -7),
  "scion_free": (1.0,),
  "muon_free": (1.0,),
}
GPT_VARIANT_LRS = IMAGE_VARIANT_LRS | {"normuon": pow2(-7, -4), "muon_aol": pow2(-7, -4)}
LONG_GPT_LRS = {"scion": pow2(-8, -5), "muon": pow2(-7, -4), "adamw": pow2(-10, -7)}


# Scion radius sets tuned on the GPT proxy ("embed, hidden, head, gains"): the Scion authors'
# shallow character-level GPT (ColNorm 1, Spectral 3, Sign 10; LIONS-EPFL/scion,
# examples/shallow-nanogpt), three neighbours of it, and the radii of their tied 124M nanoGPT
# (hidden 50, head 3000; its embedding is tied to the head). Gains (RMSNorm scales) keep ρ = 1,
# their value at initialization.
GPT_RADII = (
  "embed=1,hidden=3,head=10,bias=1",
  "embed=1,hidden=1,head=10,bias=1",
  "embed=1,hidden=3,head=30,bias=1",
  "embed=1,hidden=10,head=10,bias=1",
)
# A second round around the first round's best (hidden 10, head 10): larger hidden, larger and
# smaller head, larger embedding.
GPT_RADII_2 = (
  "embed=1,hidden=30,head=10,bias=1",
  "embed=1,hidden=10,head=30,bias=1",
  "embed=1,hidden=10,head=3,bias=1",
  "embed=3,hidden=10,head=10,bias=1",
)
# A third round around the second's best (embedding 3): a larger embedding, and the larger head.
GPT_RADII_3 = ("embed=10,hidden=10,head=10,bias=1", "embed=3,hidden=10,head=30,bias=1")
TIED_124M_RADII = "embed=1,hidden=50,head=3000,bias=1"
SEEDS = (0, 1, 2)
# The GPT protocol of docs/experiments.md: 2 layers, 200 steps (of 32 × 64 characters),
# evaluated every 25.
GPT_BASE = dict(steps=200, eval_every=25, n_layer=2, adam_lr=3e-3)  # Muon's AdamW part as they ran.


def _only(lrs: dict, *names: str) -> dict:
  return {name: lrs[name] for name in names}


# The tuned comparison of docs/results.md runs from examples/tune.py (its own protocol).

PRESETS = {
  "smoke": dict(
    task="image",
    base=dict(dataset="digits", steps=60, eval_every=20),
    sweeps=[
      Sweep({o: (2**-9, 2**-5) if o != "adamw" else (1e-3, 1e-2) for o in ALL_OPTIMIZERS}),
      Sweep({"scion": (2**-9, 2**-5), "adamw": (1e-3, 1e-2)}, widths=(32,)),
    ],
  ),
  "fashion_mnist": dict(
    # The image protocol of docs/experiments.md: an MLP 784-128-128-10, 500 steps of 128
    # images, 3 seeds.
    task="image",
    base=dict(dataset="fashion_mnist", model="mlp", width=128, steps=500, eval_every=50),
    sweeps=[
      # Every optimizer over its own grid (optax_muon, the same algorithm as muon, at muon's
      # usual best rate only); Scion with the preset's radii (input 4, hidden 2, head 2**10),
      # the best of the radius rounds below.
      Sweep({k: v for k, v in IMAGE_LRS.items() if k != "uscion"}, seeds=SEEDS),
      # Unconstrained Scion ran with the authors' radii only (before the radius rounds).
      Sweep({"uscion": IMAGE_LRS["uscion"]}, radii=("hidden=1,input=1",), seeds=SEEDS),
      # Scion's radii, round 1: the Scion authors' MLP radii (1 everywhere, head 2**10), the
      # same with the input layer at the plain √(d_out/d_in) = 0.40 scale (normax's preset
      # before Spectral(max=True)), a smaller head, larger input and hidden.
      Sweep(
        {"scion": pow2(-9, -4)},
        radii=(
          "hidden=1,input=1",
          "hidden=1,input=0.404",
          "head=256,hidden=1,input=1",
          "hidden=2,input=2",
        ),
        seeds=SEEDS,
      ),
      # Round 2, around round 1's best (hidden and input 2): larger still, and a larger head.
      Sweep(
        {"scion": pow2(-10, -5)},
        radii=(
          "hidden=4,input=4",
          "head=4096,hidden=2,input=2",
          "head=4096,hidden=4,input=4",
        ),
        seeds=SEEDS,
      ),
    ],
  ),
  "fashion_mnist_variants": dict(
    # Muon's variants, the learning-rate-free methods, Shampoo and SOAP on the fashion_mnist
    # protocol (replot with results/fashion_mnist/results.csv for one table).
    task="image",
    base=dict(dataset="fashion_mnist", model="mlp", width=128, steps=500, eval_every=50),
    sweeps=[
      Sweep(IMAGE_VARIANT_LRS, seeds=SEEDS),
      # Widened by one power of 2 where the best landed on the grid's top edge (2**-7).
      Sweep({"soap": (2**-6,)}, seeds=SEEDS),
    ],
  ),
  "digits_cnn": dict(
    # The CNN preset (scion_cnn: the Scion authors' airbench radii, conv/dense 8, head 128)
    # against radius 4 with head 2**10 and a smaller set, on sklearn's
    # digits: 300 steps of 128 images, 3 seeds.
    task="image",
    base=dict(dataset="digits", model="cnn", width=64, steps=300, eval_every=50),
    sweeps=[
      Sweep(
        {"scion": pow2(-9, -4)},
        radii=(None, "bias=4,conv=4,head=1024,hidden=4", "bias=1,conv=1,head=16,hidden=1"),
        seeds=SEEDS,
      ),
      Sweep({"adamw": pow2(-10, -5), "muon": pow2(-8, -3)}, seeds=SEEDS),
    ],
  ),
  "shakespeare_proxy": dict(
    # Scion's radii and learning rate tuned together on a narrow GPT (width 64), 3 seeds.
    task="gpt",
    base=GPT_BASE | dict(n_embd=64),
    sweeps=[
      Sweep({"scion": pow2(-8, -4)}, radii=GPT_RADII, seeds=SEEDS),
      Sweep({"scion": pow2(-9, -5)}, radii=GPT_RADII_2, seeds=SEEDS),
      Sweep({"scion": pow2(-9, -5)}, radii=GPT_RADII_3, seeds=SEEDS),
      Sweep({"scion": pow2(-12, -8)}, radii=(TIED_124M_RADII,), seeds=SEEDS),
    ],
  ),
  "shakespeare": dict(
    # The GPT protocol: 2 layers, width 128, 200 steps of 32×64 characters, 3 seeds;
    # every optimizer over its own grid, Scion with the preset's radii (from the proxy).
    task="gpt",
    base=GPT_BASE,
    sweeps=[Sweep(GPT_LRS, seeds=SEEDS)],
  ),
  "shakespeare_variants": dict(
    # The same on the shakespeare protocol (replot with results/shakespeare/results.csv).
    task="gpt",
    base=GPT_BASE,
    sweeps=[
      Sweep(GPT_VARIANT_LRS, seeds=SEEDS),
      # Widened once, by one power of 2, where the best landed on the grid's top edge (2**-7).
      Sweep({o: (2**-6,) for o in ("muon_rms", "shampoo", "soap")}, seeds=SEEDS),
      # Consistent-RMS Muon's best was at 2**-6 again: one more.
      Sweep({"muon_rms": (2**-5,)}, seeds=SEEDS),
    ],
  ),
  "shakespeare_init": dict(
    # Scion with boundary initialization (normax.init_model) against the default init above.
    task="gpt",
    base=GPT_BASE | dict(init="boundary"),
    sweeps=[Sweep(_only(GPT_LRS, "scion"), seeds=SEEDS)],
  ),
  "shakespeare_width": dict(
    # Learning-rate transfer over an 8× width range, 16 -> 128 (128 from "shakespeare"):
    # Scion's radii fixed, the learning rate swept, and the same for Muon and AdamW.
    task="gpt",
    base=GPT_BASE,
    sweeps=[Sweep(_only(GPT_LRS, "scion", "muon", "adamw"), widths=(16, 32), seeds=SEEDS)],
  ),
  "shakespeare_mha": dict(
    # The GPT protocol on the model built from nnx.MultiHeadAttention (q/k/v kernels
    # (d, heads, head_dim), out (heads, head_dim, d)): Scion and Muon with roles read from the
    # model (normax.infer_roles), Scion reading every kernel's last two axes as its matrix (what
    # labelling by name did before), and optax.contrib.muon (which sends the rank-3 attention
    # kernels to AdamW). Each over five powers of 2 around its rate on the split-attention model,
    # 3 seeds; a grid whose best lands on an edge is widened by one power of 2 there.
    task="gpt",
    base=GPT_BASE | dict(attention="mha"),
    sweeps=[
      Sweep(
        {
          "scion": pow2(-9, -5),
          "scion_last2": pow2(-9, -5),
          "muon": pow2(-7, -3),
          "optax_muon": pow2(-7, -3),
        },
        seeds=SEEDS,
      ),
      # scion_last2's best landed on the grid's bottom edge (2**-9): one more power of 2.
      Sweep({"scion_last2": (2**-10,)}, seeds=SEEDS),
      # Still on the edge there: two more, so its best is bracketed (beyond the one widening).
      Sweep({"scion_last2": (2**-12, 2**-11)}, seeds=SEEDS),
    ],
  ),
  "shakespeare_mha_tuned": dict(
    # The model built from nnx.MultiHeadAttention under the tuned protocol of docs/results.md:
    # each optimizer at its tuned width-128 1x settings from examples/tune.py (warmup, AdamW's
    # beta2 and weight decay, Muon's AdamW part), its learning rate over the tuned one and one
    # power of 2 on either side; Scion and Muon with roles read from the model; optax.contrib.muon
    # (which sends the rank-3 kernels to its AdamW part) over Muon's grid with Muon's AdamW part;
    # 3 seeds.
    task="gpt",
    base=dict(steps=200, eval_every=25, n_layer=2, attention="mha"),
    sweeps=[
      Sweep({"scion": pow2(-8, -6)}, seeds=SEEDS),
      Sweep(
        {"muon": pow2(-6, -4), "optax_muon": pow2(-6, -4)},
        settings={"adam_lr": (2**-6,)},
        seeds=SEEDS,
      ),
      Sweep(
        {"adamw": pow2(-8, -6)},
        warmups=(0.25,),
        settings={"b2": (0.95,), "weight_decay": (0.1,)},
        seeds=SEEDS,
      ),
      # optax.contrib.muon's best landed on the top edge (2**-4), and stayed there as the grid
      # grew: up to four more powers of 2 (the limit of examples/tune.py's protocol).
      Sweep({"optax_muon": pow2(-3, 0)}, settings={"adam_lr": (2**-6,)}, seeds=SEEDS),
    ],
  ),
  "shakespeare_long": dict(
    # 4× the steps (800), around each optimizer's best rate at 200 steps.
    task="gpt",
    base=dict(steps=800, eval_every=100, n_layer=2),
    sweeps=[Sweep(LONG_GPT_LRS, seeds=SEEDS)],
  ),
  "shakespeare_tied": dict(
    # The tied-embedding GPT (token table = head, scion_gpt_tied) on the width-64 proxy: the
    # Scion authors' tied radii (hidden 50, table 3000) against hidden 10, table 10 (the
    # preset's, since it won).
    task="gpt",
    base=GPT_BASE | dict(n_embd=64, tie_embeddings=True),
    sweeps=[
      Sweep({"scion": pow2(-12, -8)}, radii=("head=3000,hidden=50",), seeds=SEEDS),
      Sweep({"scion": pow2(-8, -4)}, seeds=SEEDS),
    ],
  ),
}
