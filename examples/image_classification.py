"""Image classification in Flax NNX, trained with normax (Scion, Muon) or AdamW.

An MLP or a small CNN learns sklearn's 8×8 digits (the default: no download), Fashion-MNIST or
MNIST. ``--optimizer`` picks the update rule:

- ``scion``: constrained Scion (SCG) with the Scion paper's norms for image inputs:
  ``Spectral(max=True)`` on the MLP's pixel-input layer, ``Spectral`` on hidden matrices,
  ``SpectralConv`` on conv kernels, ``Sign`` on the output head, ``BiasRMS`` on biases
  (``normax.presets.scion_mlp`` and ``normax.presets.scion_cnn``, with their radii);
- ``uscion``: the same norms, unconstrained (uSCG);
- ``muon``: ``normax.muon``, orthogonalized Nesterov momentum on the 2-D hidden matrices and
  AdamW on the head, biases and conv kernels;
- ``normuon``, ``muon_aol``, ``muon_rms``: ``normax.muon`` as NorMuon, with AOL preconditioning
  and 4 Newton–Schulz steps, and with Moonlight's consistent update RMS (one learning rate shared
  with the AdamW part);
- ``optax_muon``: ``optax.contrib.muon`` with the same split;
- ``adamw``: ``optax.adamw``;
- ``scion_free``, ``muon_free``: ``normax.scion_free`` and ``normax.muon_free``, whose step sizes
  estimate themselves (``--lr`` multiplies the estimate; 1 by default, no sweep);
- ``shampoo``, ``soap``: ``normax.scale_by_shampoo`` (grafted to sign descent's step size) and
  ``normax.scale_by_soap`` on every matrix (conv kernels: each tap's matrix), Adam on biases.

Run::

  python examples/image_classification.py                     # scion, MLP, digits, < 1 min
  python examples/image_classification.py --optimizer adamw --lr 3e-3 --width 256
  python examples/image_classification.py --dataset fashion_mnist --model cnn --steps 2000
  python examples/image_classification.py --help

Fashion-MNIST and MNIST are read from the four IDX files (``train-images-idx3-ubyte.gz`` ...,
gzipped or not): from ``--data-dir`` if given, else from the Debian package's folder
(``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist``), else from the cache
(``$NORMAX_DATA`` or ``~/.cache/normax``), where missing files are first downloaded from the
dataset's canonical location and checked against their published MD5 (``--no-download``: never).
The script prints the held-out loss and accuracy, writes them as JSON lines (``--out``) and
plots them (``--plot``), and runs unchanged on CPU, GPU or TPU.
"""

from __future__ import annotations

import dataclasses
import functools
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
  OPTIMIZERS,
  JsonLines,
  Optimizer,
  kronecker_optimizer,
  learning_rate_schedule,
  parse_config,
  prepare_path,
  with_radii,
)
from _data import load_idx_dataset  # noqa: E402

# Learning rates used when --lr is not given: each optimizer's best (mean of 3 seeds) on the
# grids of examples/compare.py: the MLP's on Fashion-MNIST (`--preset fashion_mnist`; uscion
# with the authors' radii), the CNN's on the digits (`--preset digits_cnn`; uscion not measured).
DEFAULT_LR = {
  "mlp": {"scion": 2**-8, "uscion": 2**-7, "muon": 2**-6, "optax_muon": 2**-6, "adamw": 2**-8},
  "cnn": {"scion": 2**-7, "uscion": 2**-9, "muon": 2**-3, "optax_muon": 2**-3, "adamw": 2**-5},
}
# Muon's variants, Shampoo and SOAP: the MLP's from `--preset fashion_mnist_variants`
# (results/fashion_mnist_variants); not measured on the CNN, which takes Muon's rate for the Muon
# variants and AdamW's for the rest. The learning-rate-free methods' 1 is a multiplier (no sweep).
DEFAULT_LR["mlp"] |= {
  "normuon": 2**-6, "muon_aol": 2**-6, "muon_rms": 2**-8, "shampoo": 2**-8, "soap": 2**-7,
  "scion_free": 1.0, "muon_free": 1.0,
}  # fmt: skip
DEFAULT_LR["cnn"] |= {
  "normuon": 2**-3, "muon_aol": 2**-3, "muon_rms": 2**-5, "shampoo": 2**-5, "soap": 2**-5,
  "scion_free": 1.0, "muon_free": 1.0,
}  # fmt: skip
# Scion's labels and radii: the preset of each model family (their docstrings give the sources).
SCION_PRESETS = {"mlp": normax.presets.scion_mlp, "cnn": normax.presets.scion_cnn}


@dataclasses.dataclass
class Config:
  dataset: Literal["digits", "fashion_mnist", "mnist"] = "digits"  # digits: no download.
  data_dir: str | None = None  # Folder of the IDX files; None: Debian's folder, else the cache.
  download: bool = True  # Download missing IDX files into the cache (checked by MD5).
  train_size: int | None = None  # Use only this many training images (None: all).
  eval_size: int | None = None  # Use only this many held-out images (None: all).
  model: Literal["mlp", "cnn"] = "mlp"  # The CNN's conv kernels get SpectralConv.
  width: int = 128  # Hidden units; the CNN's conv layers have width/4 and width/2 channels.
  optimizer: Optimizer = "scion"  # uscion: unconstrained Scion; *_free: learning-rate-free.
  lr: float | None = None  # Peak learning rate; None: DEFAULT_LR[model][optimizer].
  adam_lr: float | None = None  # AdamW part of muon / optax_muon; None: 3e-3.
  beta: float | None = None  # Momentum; None: 0.9 (Scion), 0.95 (Muon), b1=0.9 (AdamW).
  weight_decay: float = 0.0  # Decoupled weight decay of adamw, muon and optax_muon.
  radii: str | None = None  # Scion radii per label, e.g. "hidden=2,head=2**9"; none: the preset's.
  init: Literal["default", "boundary"] = "default"  # boundary: Scion's init (normax.init_model).
  steps: int = 500  # Training steps.
  batch_size: int = 128  # Images per step.
  warmup: int = 0  # Linear warmup steps.
  decay: Literal["linear", "cosine", "constant"] = "linear"  # After warmup, to 0 at `steps`.
  eval_every: int = 50  # Steps between evaluations on the held-out split.
  seed: int = 0  # Initialization and batch order.
  out: str | None = "runs/image_classification.jsonl"  # JSON lines; empty: none.
  plot: str | None = "runs/image_classification.png"  # Loss and accuracy plot; empty: none.
  progress: bool = True  # A tqdm progress bar.


# -- data ---------------------------------------------------------------------------------------


def load_data(config: Config):
  """``(x_train, y_train, x_test, y_test)``: images ``(n, h, w, 1)`` standardized, int labels."""
  return _load_data(
    config.dataset, config.data_dir, config.train_size, config.eval_size, config.download
  )


@functools.cache  # The comparison runner trains many models on the same data.
def _load_data(
  dataset: str, data_dir: str | None, train_size: int | None, eval_size: int | None, download: bool
):
  if dataset == "digits":
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target
    order = np.random.default_rng(0).permutation(len(labels))  # A fixed 75/25 split.
    split = len(labels) * 3 // 4
    train, test = order[:split], order[split:]
    x_train, y_train, x_test, y_test = images[train], labels[train], images[test], labels[test]
  else:
    x_train, y_train, x_test, y_test = load_idx_dataset(dataset, data_dir, download)
  x_train, y_train = x_train[:train_size], y_train[:train_size]
  x_test, y_test = x_test[:eval_size], y_test[:eval_size]
  mean, std = x_train.mean(), x_train.std() + 1e-8
  prep = lambda x: ((x.astype(np.float32) - mean) / std)[..., None]
  return prep(x_train), y_train.astype(np.int32), prep(x_test), y_test.astype(np.int32)


# -- models -------------------------------------------------------------------------------------


class MLP(nnx.Module):
  """Pixels → width → width → classes; the layer names are what the labels match."""

  def __init__(self, image_shape, width: int, classes: int, *, rngs: nnx.Rngs):
    self.input = nnx.Linear(int(np.prod(image_shape)), width, rngs=rngs)
    self.hidden = nnx.Linear(width, width, rngs=rngs)
    self.head = nnx.Linear(width, classes, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.input(x.reshape(x.shape[0], -1)))
    x = jax.nn.relu(self.hidden(x))
    return self.head(x)


class CNN(nnx.Module):
  """Two 3×3 conv layers (width/4, width/2 channels), each followed by 2×2 average pooling, a
  dense layer of ``width`` units and the head."""

  def __init__(self, image_shape, width: int, classes: int, *, rngs: nnx.Rngs):
    h, w, c = image_shape
    c1, c2 = max(1, width // 4), max(1, width // 2)
    self.conv1 = nnx.Conv(c, c1, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
    self.hidden = nnx.Linear((h // 4) * (w // 4) * c2, width, rngs=rngs)
    self.head = nnx.Linear(width, classes, rngs=rngs)

  def __call__(self, x):
    pool = lambda x: nnx.avg_pool(x, (2, 2), strides=(2, 2))
    x = pool(jax.nn.relu(self.conv1(x)))
    x = pool(jax.nn.relu(self.conv2(x)))
    x = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))
    return self.head(x)


# -- the optimizer: the normax recipe -----------------------------------------------------------


def scion_recipe(config: Config) -> tuple[normax.LabelFn, dict[str, normax.LayerSpec]]:
  """Scion's labels and specs for ``config.model``: the preset, with ``config.radii`` applied."""
  labels, specs = SCION_PRESETS[config.model]()
  return labels, with_radii(specs, config.radii)


def make_optimizer(config: Config) -> optax.GradientTransformation:
  """The update rule named by ``config.optimizer``, on a warmup-then-decay learning rate."""
  peak = config.lr if config.lr is not None else DEFAULT_LR[config.model][config.optimizer]
  lr = learning_rate_schedule(peak, config.steps, config.warmup, config.decay)
  adam_lr = learning_rate_schedule(
    config.adam_lr or 3e-3, config.steps, config.warmup, config.decay
  )

  if config.optimizer in ("scion", "uscion"):
    # Spectral(max=True) (pixel input) → Spectral (hidden) → Sign (head), SpectralConv on conv
    # kernels and BiasRMS on biases; each label's norm ball has its radius ρ.
    labels, specs = scion_recipe(config)
    beta = 0.9 if config.beta is None else config.beta
    return normax.scion(lr, specs, labels, beta=beta, constrained=config.optimizer == "scion")

  # Muon: orthogonalized momentum on 2-D hidden matrices; AdamW on the head, biases and conv
  # kernels (Muon's own recipe; use scion for spectral steps on conv kernels).
  muon_labels = normax.label_by_path(
    [("head/*", "adam"), normax.Rule("*", "muon", ndim=2)], default="adam"
  )
  beta = 0.95 if config.beta is None else config.beta
  if config.optimizer in MUON_VARIANTS:
    # Moonlight's consistent-RMS Muon shares AdamW's learning rate.
    shared = config.optimizer == "muon_rms"
    return normax.muon(
      lr, labels=muon_labels, beta=beta, weight_decay=config.weight_decay,
      adam_learning_rate=lr if shared else adam_lr,
      adam_weight_decay=config.weight_decay if shared else 0.0,
      **MUON_VARIANTS[config.optimizer],
    )  # fmt: skip
  if config.optimizer == "scion_free":
    # No learning rate to tune: `lr` (peak 1 unless --lr) only shapes the estimated step.
    labels, specs = scion_recipe(config)
    beta = 0.9 if config.beta is None else config.beta
    return normax.scion_free(specs, labels, learning_rate=lr, beta=beta)
  if config.optimizer == "muon_free":
    return normax.muon_free(muon_labels, learning_rate=lr, beta=beta)
  if config.optimizer in ("shampoo", "soap"):
    b1 = 0.9 if config.beta is None else config.beta
    return kronecker_optimizer(config.optimizer, lr, b1=b1, weight_decay=config.weight_decay)
  if config.optimizer == "optax_muon":
    dims = lambda params: jax.tree.map(
      lambda label: optax.contrib.MuonDimensionNumbers() if label == "muon" else None,
      muon_labels(params),
    )
    return optax.contrib.muon(
      lr, beta=beta, weight_decay=config.weight_decay, adam_learning_rate=adam_lr,
      muon_weight_dimension_numbers=dims,
    )  # fmt: skip
  if config.optimizer == "adamw":
    b1 = 0.9 if config.beta is None else config.beta
    return optax.adamw(lr, b1=b1, weight_decay=config.weight_decay)
  raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}.")


# -- training -----------------------------------------------------------------------------------


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x_all, y_all, idx):
  x, y = x_all[idx], y_all[idx]  # The data stays on the device; only indices travel.
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def eval_step(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
  return loss, jnp.sum(jnp.argmax(logits, axis=-1) == y)


def evaluate(model, x, y, batch: int = 1000) -> tuple[float, float]:
  """Mean loss and accuracy over ``(x, y)``, in chunks of ``batch``."""
  loss, correct = 0.0, 0
  for i in range(0, len(y), batch):
    l, c = eval_step(model, x[i : i + batch], y[i : i + batch])
    loss, correct = loss + float(l), correct + int(c)
  return loss / len(y), correct / len(y)


def batches(n: int, batch_size: int, rng: np.random.Generator):
  """Indices of minibatches, epoch after epoch of a fresh permutation (drop the remainder)."""
  if batch_size > n:
    raise ValueError(f"--batch-size {batch_size} exceeds the {n} training images.")
  while True:
    order = rng.permutation(n)
    for i in range(0, n - batch_size + 1, batch_size):
      yield order[i : i + batch_size]


def main(config: Config) -> dict:
  """Trains, evaluates every ``eval_every`` steps, writes ``out`` and ``plot``; returns metrics.

  ``train_loss`` at an evaluation is the mean minibatch loss since the previous one.
  """
  from tqdm.auto import tqdm

  if config.steps < 1 or config.eval_every < 1:
    raise ValueError(f"steps and eval_every must be >= 1, got {config.steps}, {config.eval_every}.")
  x_train, y_train, x_test, y_test = load_data(config)
  Model = {"mlp": MLP, "cnn": CNN}[config.model]
  model = Model(x_train.shape[1:], config.width, 10, rngs=nnx.Rngs(config.seed))
  if config.init == "boundary":  # Every layer on its norm ball's boundary (biases stay at 0).
    if config.optimizer not in ("scion", "uscion"):
      raise ValueError("--init boundary uses Scion's norms and radii (--optimizer scion/uscion).")
    labels, specs = scion_recipe(config)
    normax.init_model(jax.random.key(config.seed), model, labels, specs, keep=("bias",))
  optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
  x_train, y_train = jax.device_put(x_train), jax.device_put(y_train)
  x_test, y_test = jax.device_put(x_test), jax.device_put(y_test)

  log = JsonLines(config.out)
  log.write({"config": dataclasses.asdict(config), "device": str(jax.devices()[0])})
  # nnx.cached_partial keeps the model's graph structure, saving nnx.jit's per-call traversal.
  step_fn = nnx.cached_partial(train_step, model, optimizer)
  rng = np.random.default_rng(config.seed)
  history, losses = [], []
  start = time.perf_counter()
  bar = tqdm(range(1, config.steps + 1), disable=not config.progress, desc=config.optimizer)
  for step, idx in zip(bar, batches(len(y_train), config.batch_size, rng), strict=False):
    losses.append(step_fn(x_train, y_train, jnp.asarray(idx)))
    if step % config.eval_every == 0 or step == config.steps:
      train_loss = float(jnp.mean(jnp.stack(losses)))
      eval_loss, eval_acc = evaluate(model, x_test, y_test)
      record = dict(
        step=step, train_loss=train_loss, eval_loss=eval_loss, eval_acc=eval_acc,
        seconds=time.perf_counter() - start,
      )  # fmt: skip
      history.append(record)
      log.write(record)
      bar.set_postfix(loss=f"{train_loss:.3f}", eval_acc=f"{eval_acc:.3f}")
      losses = []
      if not np.isfinite(train_loss):
        break  # Diverged: later steps would only produce NaN.
  bar.close()

  last = history[-1]
  metrics = {
    "history": history,
    "final_train_loss": last["train_loss"] if last["step"] == config.steps else float("nan"),
    "final_eval_loss": last["eval_loss"] if last["step"] == config.steps else float("nan"),
    "final_eval_acc": last["eval_acc"] if last["step"] == config.steps else float("nan"),
    "seconds": time.perf_counter() - start,
  }
  log.write({k: v for k, v in metrics.items() if k != "history"})
  print(
    f"{config.optimizer} on {config.dataset} ({config.model}, width {config.width}): "
    f"eval loss {metrics['final_eval_loss']:.4f}, eval accuracy {metrics['final_eval_acc']:.4f},"
    f" {metrics['seconds']:.1f}s on {jax.devices()[0].platform}"
  )
  if config.plot:
    plot(history, config, prepare_path(config.plot))
  written = [p for p in (config.out, config.plot) if p]
  if written:
    print("wrote " + ", ".join(written))
  return metrics


def plot(history: list[dict], config: Config, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = [r["step"] for r in history]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
  ax_loss.plot(steps, [r["train_loss"] for r in history], label="train (mean since last eval)")
  ax_loss.plot(steps, [r["eval_loss"] for r in history], label="held-out")
  ax_loss.set(xlabel="step", ylabel="cross-entropy", yscale="log")
  ax_loss.legend()
  ax_acc.plot(steps, [r["eval_acc"] for r in history], color="C1")
  ax_acc.set(xlabel="step", ylabel="held-out accuracy")
  fig.suptitle(f"{config.optimizer}, {config.model} on {config.dataset}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main(parse_config(Config, description=__doc__.split("\n\n")[0]))
