"""A short training run with normax as installed from its wheel (run by .ci/run).

Run it from outside the checkout with the interpreter of an environment the wheel was installed
into: it checks that the package it imports is that installed copy and ships its type marker,
then trains a small Flax MLP a few steps with Scion (the MLP preset) and with Muon and checks that
the loss falls. A module or data file the wheel misses fails here, not for the first user.
"""

from __future__ import annotations

import importlib.resources
import pathlib
import sys

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import normax


class MLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.input = nnx.Linear(16, 32, rngs=rngs)
    self.hidden = nnx.Linear(32, 32, rngs=rngs)
    self.head = nnx.Linear(32, 4, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.hidden(jax.nn.relu(self.input(x)))))


def train(tx: optax.GradientTransformation, steps: int = 20) -> tuple[float, float]:
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(1), (64, 16))
  y = jax.random.randint(jax.random.key(2), (64,), 0, 4)

  @nnx.jit
  def step(model, optimizer):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(steps)]
  return losses[0], losses[-1]


def main() -> None:
  package = pathlib.Path(normax.__file__).resolve().parent
  checkout = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
  print(f"normax {normax.__version__} imported from {package}")
  if checkout is not None and package.is_relative_to(checkout):
    sys.exit(f"normax was imported from the checkout {checkout}, not from the installed wheel")
  if not importlib.resources.files("normax").joinpath("py.typed").is_file():
    sys.exit("the installed package has no py.typed marker")

  labels, specs = normax.presets.scion_mlp()
  optimizers = {
    "scion (scion_mlp preset)": normax.scion(2**-6, specs, labels, beta=0.9, constrained=True),
    "muon": normax.muon(0.02),
  }
  for name, tx in optimizers.items():
    first, last = train(tx)
    print(f"{name}: loss {first:.3f} -> {last:.3f}")
    if not (jnp.isfinite(last) and last < 0.8 * first):
      sys.exit(f"{name} did not train: loss {first:.3f} -> {last:.3f} in 20 steps")


if __name__ == "__main__":
  main()
