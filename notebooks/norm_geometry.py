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
# # Norm geometry
#
# Steepest descent needs a norm. Given a gradient `g` and a sharpness `λ`, the step that
# minimizes the local model `⟨g, Δw⟩ + (λ/2)‖Δw‖²` is
#
# $$\Delta w = -\frac{\|g\|^\dagger}{\lambda}\,\mathrm{dualize}(g),
# \qquad \mathrm{dualize}(g) = \operatorname{argmax}_{\|t\| \le 1} \langle g, t\rangle,$$
#
# where `‖g‖† = ⟨g, dualize(g)⟩` is the dual norm (Bernstein & Newhouse, *Old Optimizer, New
# Norm*, Prop. 1). The norm picks the **direction** (the point of its unit ball furthest along
# `g`) and, through the dual norm, the **length** of the step.
#
# This notebook draws that picture with normax's own norms:
#
# 1. the unit balls of ℓ1, ℓ2 and ℓ∞ in 2-D, a gradient, each norm's `dualize(g)` and the
#    steepest-descent step for a few sharpnesses;
# 2. what Newton–Schulz does to singular values (the `Spectral` norm's `dualize` is the polar
#    factor `UVᵀ`, computed by Newton–Schulz);
# 3. what each layer norm's `dualize` does to a real weight gradient.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import normax

# %% [markdown]
# ## 1. Unit balls and steepest-descent directions in 2-D
#
# normax's norms act on matrices `W` of shape `(fan_in, fan_out)`, read as the operator
# `x ↦ x @ W`. A 2-vector fits in two ways, and the operator norms then reduce to vector norms:
#
# * `L1ToLp(p)` is `max_i ‖W_i‖_p` over the rows `W_i`. On a **1×2** matrix (one row) that is
#   the ℓp norm of the row, so `L1ToLp(1)`, `L1ToLp(2)` and `L1ToLp(inf)` give the ℓ1, ℓ2 and
#   ℓ∞ geometries.
# * `Frobenius` is ℓ2 on any tensor, and `Sign(normalized=False)` is the max norm `‖w‖_max`,
#   i.e. ℓ∞ on a vector. We use these two for ℓ2 and ℓ∞ and check that they agree with
#   `L1ToLp`.
#
# The unit ball is drawn from the norm itself: along each direction `u` the boundary point is
# `u / ‖u‖`.

# %%
as_row = lambda v: jnp.reshape(v, (1, 2))  # a 2-vector as a 1×2 matrix (one row)

geometries = {
  "ℓ1": (normax.L1ToLp(1.0), as_row),
  "ℓ2": (normax.Frobenius(), lambda v: v),
  "ℓ∞": (normax.Sign(normalized=False), lambda v: v),
}

g = jnp.array([1.0, 0.4])  # the gradient
angles = np.linspace(0, 2 * np.pi, 721)
directions = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], axis=1), jnp.float32)

for name, (norm, shape) in geometries.items():
  d = np.ravel(norm.dualize(shape(g)))
  print(
    f"{name}: dualize(g) = {np.round(d, 3)},"
    f" ‖g‖† = {float(norm.dual_norm(shape(g))):.3f},"
    f" ⟨g, dualize(g)⟩ = {float(np.dot(g, d)):.3f},"
    f" ‖dualize(g)‖ = {float(norm.norm(shape(jnp.asarray(d)))):.3f}"
  )

# The same geometries from the ℓ1→ℓp operator norm on a 1×2 matrix.
for p, (norm, shape) in zip([1.0, 2.0, np.inf], geometries.values(), strict=True):
  a = np.ravel(normax.L1ToLp(p).dualize(as_row(g)))
  b = np.ravel(norm.dualize(shape(g)))
  np.testing.assert_allclose(a, b, atol=1e-6)

# %% [markdown]
# Now the step. `normax.steepest_descent(learning_rate, norm, sharpness=λ)` is the optax chain
# `scale_by_dual_norm(norm, λ) → scale_by_learning_rate`, so with learning rate 1 its update
# is exactly `Δw = -(‖g‖†/λ)·dualize(g)`. The step lands on the ball of radius `‖g‖†/λ`
# (dashed), at the point furthest along `-g`; a larger sharpness means a shorter step in the
# same direction. The dotted line is the level set `⟨g, t⟩ = ⟨g, dualize(g)⟩` of the linear
# model: it touches the unit ball at `dualize(g)`.


# %%
def steepest_step(norm, shape, g, sharpness):
  tx = normax.steepest_descent(1.0, norm, sharpness=sharpness)
  update, _ = tx.update(shape(g), tx.init(shape(g)))
  return np.ravel(update)


sharpnesses = [1.0, 2.0, 4.0]
fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
for ax, (name, (norm, shape)) in zip(axes, geometries.items(), strict=True):
  size = jax.vmap(lambda u, norm=norm, shape=shape: norm.norm(shape(u)))(directions)
  ball = np.asarray(directions / size[:, None])
  ax.fill(ball[:, 0], ball[:, 1], color="0.9", zorder=0)
  ax.plot(ball[:, 0], ball[:, 1], color="0.3", lw=1)
  d = np.ravel(norm.dualize(shape(g)))
  dual = float(norm.dual_norm(shape(g)))
  # The level line {t : ⟨g, t⟩ = ⟨g, d⟩}, perpendicular to g, through d.
  perp = np.array([-g[1], g[0]]) / np.linalg.norm(g)
  line = d[None] + np.linspace(-2, 2, 2)[:, None] * perp[None]
  ax.plot(line[:, 0], line[:, 1], ":", color="0.4", lw=1)
  ax.annotate("", g, (0, 0), arrowprops=dict(arrowstyle="->", color="k", lw=2))
  ax.text(*(g * 1.05), "g", fontsize=12)
  ax.plot(*d, "o", color="C3", label="dualize(g)")
  for i, lam in enumerate(sharpnesses):
    step = steepest_step(norm, shape, g, lam)
    ring = ball * dual / lam
    ax.plot(ring[:, 0], ring[:, 1], "--", color=f"C{i}", lw=0.8)
    ax.annotate("", step, (0, 0), arrowprops=dict(arrowstyle="->", color=f"C{i}", lw=1.5))
    ax.plot([], [], color=f"C{i}", label=f"Δw, λ = {lam:g}")
  ax.set_title(f"{name}: ‖g‖† = {dual:.2f}")
  ax.set_aspect("equal")
  ax.set_xlim(-1.6, 1.6)
  ax.set_ylim(-1.6, 1.6)
  ax.axhline(0, color="0.8", lw=0.5)
  ax.axvline(0, color="0.8", lw=0.5)
axes[0].legend(loc="lower left", fontsize=8)
fig.suptitle("Unit balls, g, dualize(g), and the steepest-descent step -(‖g‖†/λ)·dualize(g)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Three familiar optimizers appear: under ℓ2 the step is the gradient itself scaled by `1/λ`
# (gradient descent); under ℓ∞ it is `-(‖g‖₁/λ)·sign(g)` (sign descent, Adam without its
# moving averages); under ℓ1 it moves only the largest coordinate (coordinate descent).
#
# The step really is the minimizer of the local model. A brute-force check on a grid of steps:

# %%
grid = np.stack(np.meshgrid(np.linspace(-2, 2, 401), np.linspace(-2, 2, 401)), axis=-1)
grid = jnp.asarray(grid.reshape(-1, 2), jnp.float32)
lam = 2.0
for name, (norm, shape) in geometries.items():
  sizes = jax.vmap(lambda u, norm=norm, shape=shape: norm.norm(shape(u)))(grid)
  model = np.asarray(grid @ g + lam / 2 * sizes**2)
  best = np.asarray(grid)[np.argmin(model)]
  step = steepest_step(norm, shape, g, lam)
  print(f"{name}: grid minimizer {np.round(best, 2)}, normax step {np.round(step, 3)}")

# %% [markdown]
# ## 2. Newton–Schulz: what happens to the singular values
#
# For matrices, the spectral norm's `dualize` is `UVᵀ` (up to the `√(d_out/d_in)` RMS scale):
# every nonzero singular value of the gradient becomes 1. normax computes it with an odd
# polynomial iteration on the Frobenius-normalized matrix (`normax.newton_schulz`), which maps
# each normalized singular value `x = σ/‖G‖_F` to `p(x)` without touching the singular
# vectors. The schedule chooses the polynomials:
#
# * `"quintic"`: the classic Muon `(3.4445, -4.7750, 2.0315)` at every step: fast, but lands in
#   a band around 1 instead of converging;
# * `"polar_express"`: a different minimax-optimal quintic per step;
# * `"cubic"`: `1.5x - 0.5x³`, which converges to exactly 1 but slowly for small `x`.
#
# `normax.schedule_bound(schedule, steps)` gives the range of `p` over `x ∈ [10⁻³, 1]`. We
# feed two 64×128 matrices: a Gaussian one and an ill-conditioned one with singular values
# spread over four decades.

# %%
rng = np.random.default_rng(0)
m, n = 64, 128
random_matrix = rng.standard_normal((m, n)).astype(np.float32)
u, _ = np.linalg.qr(rng.standard_normal((m, m)))
v, _ = np.linalg.qr(rng.standard_normal((n, m)))
ill_conditioned = ((u * np.geomspace(1.0, 1e-4, m)) @ v.T).astype(np.float32)
matrices = {"Gaussian": random_matrix, "ill-conditioned": ill_conditioned}
singular_values = lambda a: np.linalg.svd(np.asarray(a, np.float64), compute_uv=False)

schedules = [("quintic", 5), ("polar_express", 5), ("cubic", 5), ("cubic", 20)]
results = {}  # (schedule, steps, matrix) -> (σ/‖G‖_F before, σ after)
for schedule, steps in schedules:
  for name, mat in matrices.items():
    out = normax.newton_schulz(jnp.asarray(mat), steps=steps, coefficients=schedule)
    before = singular_values(mat) / np.linalg.norm(mat)
    results[schedule, steps, name] = (before, singular_values(out))

fig, axes = plt.subplots(1, len(schedules), figsize=(15, 3.8), sharey=True)
for ax, (schedule, steps) in zip(axes, schedules, strict=True):
  lo, hi = normax.schedule_bound(schedule, steps)
  ax.axhspan(lo, hi, color="C2", alpha=0.15, label="schedule_bound")
  ax.axhline(1.0, color="0.5", lw=0.5)
  ax.axvline(1e-3, color="0.5", lw=0.5, ls=":")
  for i, name in enumerate(matrices):
    before, after = results[schedule, steps, name]
    ax.semilogx(before, after, "o", ms=3, color=f"C{i}", label=name)
  ax.set_title(f"{schedule}, {steps} steps\nbound [{lo:.3f}, {hi:.3f}]")
  ax.set_xlabel("σ / ‖G‖_F before")
axes[0].set_ylabel("σ after")
axes[0].legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# The quintic pushes every normalized singular value above `10⁻³` (dotted line) into a band
# around 1 (the shaded `schedule_bound`, up to about 1.2): good enough for Muon and cheap, but
# not orthogonal. Polar Express reaches a much tighter band in the same five steps. The cubic
# is accurate only where it has converged: five steps leave the small singular values far
# below 1; twenty steps (four times the matmuls) converge on everything above `10⁻³`. Singular
# values below a schedule's design range, here the bottom of the ill-conditioned matrix, are
# not brought to 1; `Spectral(method="svd")` is the exact reference.
#
# The largest deviation `max |σ - 1|` over the singular values with `σ/‖G‖_F ≥ 10⁻³`, next to
# the bound's promise `max(1 - lo, hi - 1)`:

# %%
print(f"{'schedule':>14} {'steps':>5} {'bound':>7} {'Gaussian':>9} {'ill-cond.':>9}")
for schedule, steps in schedules:
  lo, hi = normax.schedule_bound(schedule, steps)
  errs = []
  for name in matrices:
    before, after = results[schedule, steps, name]
    errs.append(np.max(np.abs(after[before >= 1e-3] - 1)))
  print(f"{schedule:>14} {steps:>5} {max(1 - lo, hi - 1):7.3f} {errs[0]:9.3f} {errs[1]:9.3f}")
exact = singular_values(normax.Spectral(method="svd").orthogonalize(jnp.asarray(ill_conditioned)))
print(f"{'svd (exact)':>14} {'':>5} {'':>7} {'':>9} {np.max(np.abs(exact - 1)):9.3f}")

# %% [markdown]
# ## 3. What each norm's `dualize` does to a real gradient
#
# A two-layer MLP on sklearn's 8×8 digits, at initialization: we take the gradient of the loss
# with respect to the first kernel `G` (shape `(64, 32)`: 64 pixels in, 32 hidden units out)
# and dualize it under each of Scion's layer norms:
#
# | norm | what `dualize(G)` does |
# |---|---|
# | `Spectral` | `√(d_out/d_in)·UVᵀ`: all singular values equal |
# | `Sign()` | `sign(G)/d_in`: every entry the same magnitude |
# | `ColNorm` | each row (one input pixel) rescaled to RMS 1 |
# | `RowNorm` | each column (one hidden unit) rescaled to ℓ2 norm `1/√d_in` |
# | `Frobenius` | `G/‖G‖_F`: the gradient's shape, one global scale |

# %%
digits = load_digits()
x = jnp.asarray(digits.data[:256] / 16.0, jnp.float32)
y = jnp.asarray(digits.target[:256])
params = {
  "w1": jnp.asarray(rng.standard_normal((64, 32)) / 8.0, jnp.float32),
  "w2": jnp.asarray(rng.standard_normal((32, 10)) / np.sqrt(32.0), jnp.float32),
}


def loss_fn(params):
  logits = jnp.tanh(x @ params["w1"]) @ params["w2"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


G = jax.jit(jax.grad(loss_fn))(params)["w1"]
norms = {
  "Spectral": normax.Spectral(),
  "Spectral (svd)": normax.Spectral(method="svd"),
  "Sign": normax.Sign(),
  "ColNorm": normax.ColNorm(),
  "RowNorm": normax.RowNorm(),
  "Frobenius": normax.Frobenius(),
}
dualized = {"gradient G": G} | {name: norm.dualize(G) for name, norm in norms.items()}
for name, norm in norms.items():
  d = dualized[name]
  print(
    f"{name:>14}: ⟨G, dualize(G)⟩ = {float(jnp.vdot(G, d)):.4f},"
    f" ‖G‖† = {float(norm.dual_norm(G)):.4f}, ‖dualize(G)‖ = {float(norm.norm(d)):.3f}"
  )

sigma = np.linalg.svd(np.asarray(G), compute_uv=False) / np.linalg.norm(G)
print(f"σ / ‖G‖_F of the gradient: from {sigma.max():.3f} down to {sigma.min():.1e}")

# %% [markdown]
# `⟨G, dualize(G)⟩ = ‖G‖†` and `‖dualize(G)‖ = 1` hold exactly for the closed-form norms and
# for `Spectral(method="svd")`. For the default `Spectral` (five quintic Newton–Schulz steps)
# they hold only approximately: a real gradient is close to low rank, its normalized singular
# values run down towards `10⁻³`, and section 2 showed what the quintic does there.
#
# Each column below is one matrix (64 rows = input pixels, 32 columns = hidden units). Below the
# image: its singular values, the ℓ2 norms of its rows, and of its columns, each divided by its
# largest value so that the shapes compare. Many pixels at the border of the digits are always
# zero, so their rows of `G` are zero and stay zero under every `dualize`.

# %%
fig, axes = plt.subplots(4, len(dualized), figsize=(16, 9.5))
for col, (name, mat) in enumerate(dualized.items()):
  mat = np.asarray(mat, np.float64)
  lim = np.max(np.abs(mat))
  axes[0, col].imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
  axes[0, col].set_title(name)
  axes[0, col].set_xticks([])
  axes[0, col].set_yticks([])
  stats = [
    ("singular values", np.linalg.svd(mat, compute_uv=False)),
    ("row norms (per pixel)", np.linalg.norm(mat, axis=1)),
    ("column norms (per unit)", np.linalg.norm(mat, axis=0)),
  ]
  for row, (label, values) in enumerate(stats, start=1):
    ax = axes[row, col]
    ax.fill_between(
      np.arange(len(values)), values / np.max(values), step="mid", color=f"C{row - 1}"
    )
    ax.set_ylim(0, 1.05)
    ax.set_xticks([])
    if col == 0:
      ax.set_ylabel(label, fontsize=9)
fig.suptitle("dualize(G) of the first-layer gradient of an MLP on digits")
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading across: `Spectral` flattens the singular values while keeping the singular vectors,
# exactly with the SVD and, with Newton–Schulz, within its band at the top of the spectrum
# while the gradient's smallest singular values stay below 1; `Sign` flattens the entries, spreading
# the update over every nonzero entry but reshaping the spectrum; `ColNorm` equalizes the rows
# (each input pixel gets the same RMS update: the right geometry for one-hot inputs); `RowNorm`
# equalizes the columns (each hidden unit gets the same incoming update); `Frobenius` changes
# only the scale.
