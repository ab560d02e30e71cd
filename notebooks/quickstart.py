# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: Scion on a Flax NNX MLP
#
# normax trains a model by giving every parameter a norm chosen for its role and stepping
# along that norm's linear minimization oracle. With Flax NNX it takes three steps:
#
# 1. **Label** the parameters by their paths (`hidden/kernel`, `head/kernel`, …) and say what
#    each label means: a norm, a radius ρ and, optionally, a decay.
# 2. **Check** the resolved labelling with `normax.label_table`.
# 3. **Train** with `normax.scion` through `nnx.Optimizer(model, tx, wrt=nnx.Param)`.
#
# The data is sklearn's 8×8 digits (1797 images, ships with scikit-learn): small enough to
# train on a CPU in seconds.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import normax

digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
  (digits.data / 16.0).astype(np.float32), digits.target, test_size=0.25, random_state=0
)
print(f"train {x_train.shape}, test {x_test.shape}")

# %% [markdown]
# ## The model
#
# A plain MLP: 64 pixels → 128 → 128 → 10 classes. The module names matter, because labels
# come from paths: the output layer is called `head`, which is what the preset looks for.


# %%
class MLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, width: int = 128):
    self.input = nnx.Linear(64, width, rngs=rngs)
    self.hidden = nnx.Linear(width, width, rngs=rngs)
    self.head = nnx.Linear(width, 10, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.input(x))
    x = jax.nn.relu(self.hidden(x))
    return self.head(x)


model = MLP(nnx.Rngs(0))

# %% [markdown]
# ## 1–2. Labels, specs and the label table
#
# `normax.presets.scion_mlp` returns a label function and a dict `{label: LayerSpec}`
# following the Scion paper's layer roles: `Spectral(max=True)` for the pixel-input matrix,
# `Spectral` for hidden matrices, `Sign` for the output head, `BiasRMS` for biases. The radii
# (input 4, hidden 2, head 2¹⁰) were tuned on Fashion-MNIST (the results page of the documentation).
# `label_table` shows what every parameter got; `decay = default` means the optimizer decides
# (1 when constrained, 0 when not).

# %%
labels, specs = normax.presets.scion_mlp()
print(normax.label_table(nnx.state(model, nnx.Param), labels, specs))

# %% [markdown]
# The same labelling written as your own rules (first match wins; a parameter no rule matches
# is an error that lists it):

# %%
my_labels = normax.label_by_path(
  [
    ("head/kernel", "head"),
    normax.Rule("*", "bias", ndim=1),
    ("*kernel", "hidden"),
  ]
)
my_specs = {
  "hidden": normax.LayerSpec(normax.Spectral(), radius=1.0),
  "head": normax.LayerSpec(normax.Sign(), radius=2.0**10),
  "bias": normax.LayerSpec(normax.BiasRMS(), radius=1.0),
}
print(normax.label_table(nnx.state(model, nnx.Param), my_labels, my_specs))

# %% [markdown]
# ## 3. Train
#
# `normax.scion` is a literal `optax.chain`: momentum `d ← βd + (1-β)g`, then per label
# `dualize` under the label's norm, times its radius ρ, plus the decay `μ·x`, then the learning
# rate γ. With `constrained=True` (μ = 1) each step is `x ← (1-γ)x − γρ·dualize(d)`, which keeps
# every layer inside the ball `‖x‖ ≤ ρ` of its own norm (see the *Modular norm and radius*
# notebook).
#
# It plugs into `nnx.Optimizer` like any optax optimizer; the train step is an `nnx.jit`
# function. We train for 400 steps on minibatches of 128, with a learning rate that decays
# linearly from 2⁻⁵ to zero (any float or `optax` schedule works; a constant 2⁻⁶ reaches about
# 94% test accuracy here, the decay about 98%).

# %%
steps, batch_size = 400, 128
learning_rate = optax.linear_schedule(2**-5, 0.0, steps)
tx = normax.scion(learning_rate, specs, labels, beta=0.9, constrained=True)
optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def accuracy(model, x, y):
  return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


rng = np.random.default_rng(0)
losses = []
start = time.perf_counter()
for step in range(steps):
  idx = rng.choice(len(x_train), batch_size, replace=False)
  losses.append(float(train_step(model, optimizer, x_train[idx], y_train[idx])))
  if step % 100 == 0 or step == steps - 1:
    print(f"step {step:4d}  loss {losses[-1]:.4f}")
elapsed = time.perf_counter() - start
test_acc = float(accuracy(model, x_test, y_test))
print(f"{steps} steps in {elapsed:.1f}s; test accuracy {test_acc:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(losses, lw=0.8, alpha=0.5, label="minibatch loss")
window = 20
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
ax.semilogy(np.arange(window - 1, steps), smooth, lw=2, label=f"{window}-step mean")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title(f"Scion (constrained) on digits: test accuracy {test_acc:.1%}")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Where to go next
#
# * Swap a norm or radius by editing the dict: `specs["hidden"] =
#   normax.LayerSpec(normax.Spectral(coefficients="polar_express"), radius=2.0)`.
# * `normax.scion(..., constrained=False)` is unconstrained Scion (uSCG): no decay, the
#   weights' norms are free to grow.
# * `normax.muon(...)` applies the spectral LMO to hidden matrices and AdamW elsewhere.
# * The *Norm geometry* notebook shows what each norm's `dualize` does; *Modular norm and
#   radius* shows how radius and decay bound the weights during training.
