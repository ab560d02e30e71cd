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
# # Modular norm and radius
#
# Every normax layer has a norm, a radius ρ and a decay μ (a `normax.LayerSpec`). One Scion
# step on a layer `x` with momentum `d` and learning rate γ is
#
# $$x \leftarrow (1 - \gamma\mu)\,x - \gamma\rho\,\mathrm{dualize}(d).$$
#
# Since `‖dualize(d)‖ = 1` in the layer's norm, the triangle inequality gives
# `‖x_new‖ ≤ (1-γμ)‖x‖ + γρ`. So with μ > 0 (constrained Scion, `constrained=True`, μ = 1) a
# layer inside the ball `‖x‖ ≤ ρ/μ` stays inside, and a layer outside it shrinks towards it
# geometrically. With μ = 0 (unconstrained, uSCG) nothing bounds the norm: it can grow by up to
# γρ per step.
#
# This notebook measures that on the digits MLP: each layer's norm *in its own norm* over
# training, for both modes and two radii; the **modular norm** `max_l ‖W_l‖_l / ρ_l`, which
# sums up the whole network in one number; steepest descent under the modular norm with
# `normax.scale_by_dual_norm(..., modular=True)`; and an nGPT-style projection onto spheres.

# %%
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


class MLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, width: int = 64):
    self.input = nnx.Linear(64, width, rngs=rngs)
    self.hidden = nnx.Linear(width, width, rngs=rngs)
    self.head = nnx.Linear(width, 10, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.input(x))
    x = jax.nn.relu(self.hidden(x))
    return self.head(x)


def params_of(model):
  """The model's parameters as a plain nested dict of arrays."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


# %% [markdown]
# ## Each layer's norm, in its own norm
#
# `normax.resolve_specs(params, labels, specs)` gives every parameter its `LayerSpec`, so a
# layer's size is `spec.norm.norm(w)` (`Spectral`: `√(d_in/d_out)·σ_max`; `Sign`:
# `d_in·max|w|`; `BiasRMS`: the RMS), and its bound is `ρ/μ`, here `ρ` (μ = 1).


# %%
def layer_sizes(params, spec_tree):
  """Each layer's norm divided by its radius (1 = on the sphere of its ball)."""
  return jax.tree.map(lambda spec, w: spec.norm.norm(w) / spec.radius, spec_tree, params)


def train(radius, constrained, steps=300, batch_size=128, extra=None, seed=0):
  """Trains the MLP with Scion; returns the per-step sizes, test accuracy and the model."""
  model = MLP(nnx.Rngs(seed))
  labels, specs = normax.presets.scion_mlp(radius=radius, input_radius=radius, bias_radius=radius)
  spec_tree = normax.resolve_specs(params_of(model), labels, specs)
  tx = normax.scion(
    optax.linear_schedule(2**-5, 0.0, steps), specs, labels, constrained=constrained
  )
  if extra is not None:
    tx = optax.chain(tx, extra)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    grads = nnx.grad(loss_fn)(model)
    optimizer.update(model, grads)
    return layer_sizes(params_of(model), spec_tree)

  rng = np.random.default_rng(seed)
  history = [jax.jit(lambda p: layer_sizes(p, spec_tree))(params_of(model))]
  for _ in range(steps):
    idx = rng.choice(len(x_train), batch_size, replace=False)
    history.append(step(model, optimizer, x_train[idx], y_train[idx]))
  history = jax.tree.map(lambda *xs: np.stack(xs), *history)
  accuracy = float(jnp.mean(jnp.argmax(model(x_test), -1) == y_test))
  return history, accuracy, model


runs = {}
for radius in [0.5, 2.0]:
  for constrained in [True, False]:
    runs[radius, constrained] = train(radius, constrained)
    print(
      f"radius {radius:3}, {'constrained  ' if constrained else 'unconstrained'}:"
      f" test accuracy {runs[radius, constrained][1]:.3f}"
    )

# %% [markdown]
# Each panel is one layer; the y-axis is `‖W‖/ρ`, the layer's norm as a fraction of its radius,
# so the constraint `‖W‖ ≤ ρ` is the line at 1 for every radius. Solid lines are constrained
# Scion, dashed unconstrained; colour is the radius of the input and hidden layers and the
# biases (the head keeps ρ = 2¹⁰).

# %%
layers = ["input/kernel", "hidden/kernel", "head/kernel", "hidden/bias"]
fig, axes = plt.subplots(1, len(layers), figsize=(16, 3.6))
for ax, layer in zip(axes, layers, strict=True):
  module, name = layer.split("/")
  for (radius, constrained), (history, *_) in runs.items():
    ax.plot(
      history[module][name],
      ls="-" if constrained else "--",
      color="C0" if radius == 0.5 else "C1",
      label=f"ρ = {radius}, {'constrained' if constrained else 'unconstrained'}",
    )
  ax.axhline(1.0, color="k", lw=0.8, ls=":")
  ax.set_yscale("log")
  ax.set_title(layer)
  ax.set_xlabel("step")
axes[0].set_ylabel("‖W‖ / ρ  (own norm)")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Constrained layers that start outside their ball (Flax's default initialization does not
# know the radius) shrink onto it geometrically and then stay at or inside it; the head and
# the biases, which start small, grow until they meet their bound (the head) or settle inside
# it (the biases). Unconstrained layers are pushed by each step's `γρ·dualize(d)` and nothing
# pulls them back: their norms only drift upwards, and by more for the larger steps
# of the larger radius.
#
# ## The modular norm
#
# Bernstein & Newhouse combine the layers' norms into one norm on the whole network, a
# weighted max: `‖W‖ = max_l ‖W_l‖_l / m_l`. With the radii as the masses `m_l`, constrained
# Scion keeps the **modular norm** at most 1 (once inside), whatever the number of layers.

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
for (radius, constrained), (history, *_) in runs.items():
  modular = np.max(np.stack(jax.tree.leaves(history)), axis=0)
  ax.plot(
    modular,
    ls="-" if constrained else "--",
    color="C0" if radius == 0.5 else "C1",
    label=f"ρ = {radius}, {'constrained' if constrained else 'unconstrained'}",
  )
ax.axhline(1.0, color="k", lw=0.8, ls=":")
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("max_l ‖W_l‖ / ρ_l")
ax.set_title("Modular norm of the network")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Steepest descent in the modular norm
#
# The dual of the modular norm is `Σ_l m_l ‖G_l‖†_l`, and its steepest-descent step (Prop. 7 of
# *Old Optimizer, New Norm*) is one global size times each layer's own direction:
#
# $$\Delta W_l = -\frac{1}{\lambda}\Big(\sum_k m_k \|G_k\|^\dagger_k\Big)\, m_l\,
# \mathrm{dualize}_l(G_l).$$
#
# `normax.scale_by_dual_norm(norms, sharpness, modular=True, masses=...)` computes it. Every
# layer then moves by the **same fraction of its mass**, `‖ΔW_l‖_l / m_l = Σ_k m_k‖G_k‖†/λ`,
# while per-layer steepest descent (`modular=False`) moves each layer by its own `‖G_l‖†/λ`,
# which varies by orders of magnitude across layers. One gradient of the freshly initialized
# MLP, with the radii of the ρ = 1 preset as masses:

# %%
model = MLP(nnx.Rngs(0))
labels, specs = normax.presets.scion_mlp(radius=1.0, input_radius=1.0)
params = params_of(model)
spec_tree = normax.resolve_specs(params, labels, specs)
norm_tree = jax.tree.map(lambda spec: spec.norm, spec_tree)
masses = jax.tree.map(lambda spec: spec.radius, spec_tree)


def loss_fn(model):
  logits = model(x_train[:256])
  return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[:256]).mean()


grads = nnx.to_pure_dict(nnx.grad(loss_fn)(model))
moves = {}
for modular in [False, True]:
  tx = normax.scale_by_dual_norm(norm_tree, sharpness=1.0, modular=modular, masses=masses)
  update, _ = tx.update(grads, tx.init(grads))
  moves[modular] = layer_sizes(update, spec_tree)  # ‖ΔW_l‖_l / m_l

paths = [normax.path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
positions = np.arange(len(paths))
fig, ax = plt.subplots(figsize=(9, 3.6))
for i, modular in enumerate([False, True]):
  ax.bar(
    positions + 0.4 * (i - 0.5),
    jax.tree.leaves(moves[modular]),
    width=0.4,
    label="modular=True" if modular else "modular=False (per layer)",
  )
ax.set_xticks(positions, paths, rotation=20)
ax.set_yscale("log")
ax.set_ylabel("‖ΔW_l‖_l / m_l")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Projection: staying on a sphere (nGPT-style)
#
# Decay pulls a layer *towards* its ball; a projection puts it *on* the ball (or its sphere)
# after every step. nGPT normalizes every weight vector to unit length. In normax that is
# `normax.project_to_norm_ball(norms, radius, sphere=True)` at the end of the chain, with the
# `RowNorm` (RMS→ℓ∞) norm `√d_in·max_j ‖W[:, j]‖₂`: its sphere projection rescales each column
# `W[:, j]` (the weights into unit `j`) to ℓ2 length `ρ/√d_in`, so `ρ = √d_in` gives unit
# vectors. First on one 16×6 matrix with `normax.project`, radius `√16 = 4`:

# %%
w = np.random.default_rng(0).standard_normal((16, 6)) * np.array([0.1, 0.2, 0.5, 1.0, 2.0, 3.0])
w = jnp.asarray(w, jnp.float32)
print(f"before      : column lengths {np.round(np.linalg.norm(w, axis=0), 3)}")
for sphere in [False, True]:
  projected = normax.project(w, normax.RowNorm(), radius=4.0, sphere=sphere)
  print(f"sphere={sphere!s:5}: column lengths {np.round(np.linalg.norm(projected, axis=0), 3)}")

# %% [markdown]
# The ball (`sphere=False`) only shortens the columns that are too long; the sphere puts every
# column at length 1. Now in training: unconstrained Scion followed by the sphere projection of
# the input and hidden kernels (`None`, no projection, for the biases and the head).


# %%
def sphere_norms(tree):
  """RowNorm for the input and hidden kernels, None (no projection) elsewhere."""

  def norm_of(path, _):
    name = normax.path_to_str(path)
    return normax.RowNorm() if name in ("input/kernel", "hidden/kernel") else None

  return jax.tree_util.tree_map_with_path(norm_of, tree)


projection = normax.project_to_norm_ball(sphere_norms, radius=8.0, sphere=True)  # √d_in = 8
_, accuracy, trained = train(1.0, constrained=False, extra=projection)
print(f"unconstrained Scion + sphere projection: test accuracy {accuracy:.3f}")

initial = MLP(nnx.Rngs(0))  # the same seed: the initial weights
for name in ["input", "hidden"]:
  before = np.linalg.norm(getattr(initial, name).kernel[...], axis=0)
  after = np.linalg.norm(getattr(trained, name).kernel[...], axis=0)
  print(
    f"{name}/kernel column lengths: [{before.min():.3f}, {before.max():.3f}] at init,"
    f" [{after.min():.5f}, {after.max():.5f}] after training"
  )

# %% [markdown]
# After training every column of the projected kernels has length 1: each unit's incoming
# weight vector lies on the unit sphere and only its direction is learned. Constrained decay
# and projection bound the same kind of quantity in two ways: the decay is a soft pull that
# costs nothing extra, the projection an exact normalization that needs the parameters at
# every step (and an SVD for `Spectral`).
