"""Mixture-of-experts: one orthogonalization per expert, experts with no tokens, roles.

The model is the zoo's ``routed_moe`` (tests/zoo.py): top-1 routed experts, scanned dropless
blocks multiplied by ``jax.lax.ragged_dot`` (experts ``(layers, experts, d, f)``) and a
capacity-dispatch block (experts ``(experts, d, f)``), with the last expert of every block
receiving no tokens. Its roles and matrix views are read from the computation
(``normax.infer_roles``); every per-expert update is checked against numpy's SVD of that
expert's own matrix. The sharded checks (an expert-parallel mesh) are in tests/test_sharding.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import zoo
from flax import nnx

import normax

IDLE = zoo.E - 1  # The expert of every block that receives no tokens.
EXPERTS = ("blocks/w_in", "blocks/w_out", "moe/w_in", "moe/w_out")
ROUTERS = ("blocks/router/kernel", "moe/router/kernel")
PRECONDITIONINGS = ("frobenius", "spectral", "schatten", "aol")


@pytest.fixture(scope="module")
def moe():
  entry = zoo.routed_moe(idle=IDLE)
  params = nnx.to_pure_dict(entry.params)
  roles = normax.infer_roles(entry.apply, entry.params, *entry.inputs)
  (tokens,) = entry.inputs
  targets = jax.random.randint(jax.random.key(7), tokens.shape, 0, zoo.VOCAB)

  def loss(p, tokens):
    logits = entry.apply(p, tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  # Compiled once for every test (the model's own dtype, float32).
  return params, roles, Loss(jax.jit(loss), jax.jit(jax.grad(loss))), tokens


@dataclasses.dataclass(frozen=True)
class Loss:
  fn: object
  grad: object

  def __call__(self, p, tokens):
    return self.fn(p, tokens)


def flat(tree) -> dict[str, np.ndarray]:
  return {
    normax.path_to_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def polar(m: np.ndarray) -> np.ndarray:
  """U Vᵀ of one matrix on its range, by numpy's SVD in float64.

  An expert that saw a few tokens has a gradient of rank at most their number: its polar
  factor is unique only on the range, where the LMO ``argmax ⟨G, T⟩`` lives. Singular values
  below ``m``'s float resolution (relative to the largest, as ``normax.orthogonalize_svd``
  reads them) count as zero; a zero matrix gives zero.
  """
  u, s, vt = np.linalg.svd(np.asarray(m, np.float64), full_matrices=False)
  keep = s > s.max(initial=0.0) * max(m.shape) * np.finfo(m.dtype).eps
  return (u * keep) @ vt


def per_expert_polar(g: np.ndarray) -> np.ndarray:
  """U Vᵀ of every expert (and layer) matrix of a ``(..., d_in, d_out)`` stack."""
  mats = g.reshape(-1, *g.shape[-2:])
  return np.stack([polar(m) for m in mats]).reshape(g.shape)


def train(tx, params, loss, tokens, steps, master=None):
  """Updates and the optimizer's inputs of ``steps`` steps: ``[(grads, updates, params)]``.

  ``master``: a dtype for the optimizer's copy of the parameters and its gradients (the model
  computes in its own dtype).
  """
  model_dtype = jax.tree.leaves(params)[0].dtype
  cast = lambda tree, dtype: jax.tree.map(lambda x: x.astype(dtype), tree)  # noqa: E731
  if master is not None:
    params = cast(params, master)
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for _ in range(steps):
    g = loss.grad(cast(params, model_dtype), tokens)
    if master is not None:
      g = cast(g, master)
    u, state = update(g, state, params)
    out.append((flat(g), flat(u), flat(params)))
    params = optax.apply_updates(params, u)
  return out, params


# -- roles ---------------------------------------------------------------------------------------


def test_routed_experts_are_stacks_and_routers_hidden_matrices(moe):
  _, roles, _, _ = moe
  for path in EXPERTS + ROUTERS:
    assert roles[path].kind == "hidden", (path, roles[path])
  assert roles["blocks/w_in"].view.describe((3, 4, 32, 64)) == "3·4 × [32 × 64]"
  assert roles["moe/w_out"].view.describe((4, 64, 32)) == "4 × [64 × 32]"
  assert roles["blocks/router/kernel"].view.describe((3, 32, 4)) == "3 × [32 × 4]"


def _dispatch_models():
  """MoE layers written the ways public code writes them: expert weights (e, d, f), (e, f, d)
  and a router (d, e), on tokens (b, t, d)."""
  e, d, f, b, t = 4, 8, 16, 2, 6

  def dense_vmap(p, x):  # every expert on every token, mixed by the gates (soft MoE)
    gates = jax.nn.softmax(x @ p["router"], axis=-1)
    h = jax.vmap(lambda wi, wo: jax.nn.gelu(x @ wi) @ wo)(p["w_in"], p["w_out"])
    return jnp.einsum("ebtd,bte->btd", h, gates) @ p["head"]

  def einsum_batched(p, x):  # the expert axis a batch dimension of the einsums
    gates = jax.nn.softmax(x @ p["router"], axis=-1)
    h = jax.nn.gelu(jnp.einsum("btd,edf->btef", x, p["w_in"]))
    y = jnp.einsum("btef,efd->bted", h, p["w_out"])
    return jnp.einsum("bted,bte->btd", y, gates) @ p["head"]

  def ragged(p, x):  # tokens sorted by expert, one ragged product per weight
    h = x.reshape(-1, d)
    top = jnp.argmax(h @ p["router"], axis=-1)
    order = jnp.argsort(top)
    sizes = jnp.bincount(top, length=e).astype(jnp.int32)
    y = jax.lax.ragged_dot(jax.nn.gelu(jax.lax.ragged_dot(h[order], p["w_in"], sizes)),
                           p["w_out"], sizes)  # fmt: skip
    return jnp.zeros_like(h).at[order].set(y).reshape(b, t, d) @ p["head"]

  def shard_mapped(p, x):  # expert parallel by hand: each device its experts, outputs summed
    mesh = jax.make_mesh((1,), ("expert",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.sharding.PartitionSpec

    def local(w_in, w_out, gates, x):
      h = jax.nn.gelu(jnp.einsum("btd,edf->ebtf", x, w_in))
      y = jnp.einsum("ebtf,efd->ebtd", h, w_out)
      return jax.lax.psum(jnp.einsum("ebtd,bte->btd", y, gates), "expert")

    gates = jax.nn.softmax(x @ p["router"], axis=-1)
    run = jax.shard_map(local, mesh=mesh, in_specs=(spec("expert"), spec("expert"), spec(None,
      None, "expert"), spec()), out_specs=spec(), check_vma=False)  # fmt: skip
    return run(p["w_in"], p["w_out"], gates, x) @ p["head"]

  keys = jax.random.split(jax.random.key(0), 4)
  params = {
    "router": jax.random.normal(keys[0], (d, e)),
    "w_in": jax.random.normal(keys[1], (e, d, f)),
    "w_out": jax.random.normal(keys[2], (e, f, d)),
    "head": jax.random.normal(keys[3], (d, 5)),
  }
  x = jax.random.normal(jax.random.key(1), (b, t, d))
  models = {"dense_vmap": dense_vmap, "einsum_batched": einsum_batched, "ragged": ragged}
  models["shard_mapped"] = shard_mapped
  return models, params, x


DISPATCH, DISPATCH_PARAMS, DISPATCH_X = _dispatch_models()


@pytest.mark.parametrize("name", list(DISPATCH))
def test_every_dispatch_gives_one_matrix_per_expert(name):
  roles = normax.infer_roles(DISPATCH[name], DISPATCH_PARAMS, DISPATCH_X)
  v = normax.MatrixView
  want = {"w_in": v(1, 2, (0,)), "w_out": v(1, 2, (0,)), "router": v(0, 1)}
  for path, view in want.items():
    role = roles[path]
    assert role.kind == "hidden", (path, role)
    assert role.view.resolve(3 if path != "router" else 2) == view.resolve(
      3 if path != "router" else 2
    ), (path, role.view)


def _gathered(p, x):
  """Expert weights indexed per token (``w[expert_ids]``), then a per-token product."""
  h = x.reshape(-1, x.shape[-1])
  top = jnp.argmax(h @ p["router"], axis=-1)
  y = jax.nn.gelu(jnp.einsum("nd,ndf->nf", h, p["w_in"][top]))
  y = jnp.einsum("nf,nfd->nd", y, p["w_out"][top])
  return y.reshape(x.shape) @ p["head"]


@pytest.mark.xfail(
  strict=True,
  reason="infer_roles reads a per-token gather of expert weights as an embedding table",
)
def test_per_token_gathered_experts_are_read_as_experts():
  roles = normax.infer_roles(_gathered, DISPATCH_PARAMS, DISPATCH_X)
  assert roles["w_in"].kind == "hidden", roles["w_in"]


def test_overrides_state_per_token_gathered_experts():
  # The documented way out until then: state the experts' role and view.
  view = normax.MatrixView(1, 2, (0,))
  overrides = {p: normax.Role("hidden", view) for p in ("w_in", "w_out")}
  roles = normax.infer_roles(_gathered, DISPATCH_PARAMS, DISPATCH_X, overrides=overrides)
  g = jax.jit(jax.grad(lambda p: jnp.sum(_gathered(p, DISPATCH_X) ** 2)))(DISPATCH_PARAMS)
  tx = normax.muon(
    1.0, roles=roles, orthogonalizer=normax.Orthogonalizer(method="svd"), beta=0.0, nesterov=False
  )
  u, _ = jax.jit(tx.update)(g, tx.init(DISPATCH_PARAMS), DISPATCH_PARAMS)
  for path in ("w_in", "w_out"):
    d_in, d_out = g[path].shape[-2:]
    want = -max(1.0, np.sqrt(d_out / d_in)) * per_expert_polar(np.asarray(g[path]))
    np.testing.assert_allclose(u[path], want, atol=1e-4, err_msg=path)


# -- one orthogonalization per expert ------------------------------------------------------------


# Few tokens per expert make low-rank, ill-conditioned gradients whose float32 SVD is accurate to
# about 1e-4 only: the optimizer runs on float64 copies of the parameters and gradients (the
# model in float32), and the per-expert polar factors are checked to 1e-6.


@jax.enable_x64(True)
def test_scion_trains_experts_with_per_expert_polar_factors(moe):
  params, roles, loss, tokens = moe
  labels, specs = normax.presets.scion_gpt(roles=roles)
  specs["hidden"] = dataclasses.replace(specs["hidden"], norm=normax.Spectral(method="svd"))
  lr, beta, rho = 2**-6, 0.9, specs["hidden"].radius
  tx = normax.scion(lr, specs, labels, beta=beta, constrained=False)
  steps, final = train(tx, params, loss, tokens, 4, master=jnp.float64)
  moment = {p: 0.0 for p in EXPERTS + ROUTERS}
  for g, u, _ in steps:
    for path in EXPERTS + ROUTERS:
      moment[path] = beta * moment[path] + (1 - beta) * g[path].astype(np.float64)
      d_in, d_out = g[path].shape[-2:]
      scale = lr * rho * np.sqrt(d_out / d_in)
      assert u[path].dtype == np.float64
      np.testing.assert_allclose(
        u[path], -scale * per_expert_polar(moment[path]), atol=1e-6 * scale, err_msg=path
      )
    for path in EXPERTS:  # The idle expert: no tokens, no gradient, no update.
      assert not np.any(g[path][..., IDLE, :, :]), path
      assert not np.any(u[path][..., IDLE, :, :]), path
  final = jax.tree.map(lambda x: x.astype(jnp.float32), final)
  assert float(loss(final, tokens)) < float(loss(params, tokens))


@jax.enable_x64(True)
def test_muon_trains_experts_with_per_expert_polar_factors(moe):
  params, roles, loss, tokens = moe
  lr = 0.02
  tx = normax.muon(lr, roles=roles, orthogonalizer=normax.Orthogonalizer(method="svd"))
  # Muon's direction (Nesterov momentum, bias corrected), by the same momentum transform.
  direction = normax.momentum(0.95, nesterov=True, bias_correction=True)
  steps, final = train(tx, params, loss, tokens, 4, master=jnp.float64)
  m_state = direction.init({p: jnp.zeros_like(steps[0][0][p]) for p in EXPERTS + ROUTERS})
  for g, u, _ in steps:
    d, m_state = direction.update({p: jnp.asarray(g[p]) for p in EXPERTS + ROUTERS}, m_state)
    for path in EXPERTS + ROUTERS:
      d_in, d_out = g[path].shape[-2:]
      scale = lr * max(1.0, np.sqrt(d_out / d_in))
      want = -scale * per_expert_polar(np.asarray(d[path]))
      np.testing.assert_allclose(u[path], want, atol=1e-6 * scale, err_msg=path)
    for path in EXPERTS:
      assert not np.any(u[path][..., IDLE, :, :]), path
  final = jax.tree.map(lambda x: x.astype(jnp.float32), final)
  assert float(loss(final, tokens)) < float(loss(params, tokens))


def test_default_newton_schulz_is_per_expert(moe):
  # The default orthogonalizer on the stacks equals it on each expert's matrix alone. (Random
  # full-rank gradients: Newton–Schulz multiplies the rounding of a tiny singular value by up
  # to a⁵ ≈ 485, so on the few-token gradients the batched and lone runs differ by ~3e-5.)
  params, roles, _, _ = moe
  keys = iter(jax.random.split(jax.random.key(5), 4))
  g = {k: {n: jax.random.normal(next(keys), params[k][n].shape) for n in ("w_in", "w_out")}
       for k in ("blocks", "moe")}  # fmt: skip
  tx = normax.scale_by_lmo(normax.Spectral(), views=roles.views)
  u = flat(jax.jit(tx.update)(g, tx.init(g))[0])
  g = flat(g)
  lone = jax.jit(normax.Spectral().dualize)  # one matrix at a time
  for path in EXPERTS:
    mats = g[path].reshape(-1, *g[path].shape[-2:])
    alone = np.stack([np.asarray(lone(jnp.asarray(m))) for m in mats])
    np.testing.assert_allclose(u[path], alone.reshape(g[path].shape), atol=1e-5, err_msg=path)


# -- experts that receive no tokens --------------------------------------------------------------


# The exact SVD has no preconditioning; the two Newton–Schulz forms take every one.
ORTHOGONALIZERS = [("svd", "frobenius")] + [
  (m, p) for m in ("newton_schulz", "gram_newton_schulz") for p in PRECONDITIONINGS
]


@pytest.mark.parametrize(("method", "preconditioning"), ORTHOGONALIZERS)
def test_zero_expert_gives_zero_update_under_every_preconditioning(method, preconditioning):
  g = np.array(jax.random.normal(jax.random.key(0), (3, 4, 32, 64)))
  g[:, IDLE] = 0.0
  g[1, 0] = 0.0  # An expert idle in one layer only.
  norm = normax.Spectral(method=method, preconditioning=preconditioning)
  out = np.asarray(jax.jit(norm.dualize)(jnp.asarray(g)))
  assert np.all(np.isfinite(out))
  assert not np.any(out[:, IDLE]) and not np.any(out[1, 0])
  # The busy experts are unaffected by the idle ones: the same as dualizing them without.
  busy = np.array([[layer, e] for layer in range(3) for e in range(4) if np.any(g[layer, e])])
  alone = np.asarray(jax.jit(norm.dualize)(jnp.asarray(g[busy[:, 0], busy[:, 1]])))
  np.testing.assert_allclose(out[busy[:, 0], busy[:, 1]], alone, atol=1e-5)


# Those that change the arithmetic of the direction (the others only rescale it).
MUON_VARIANTS = {
  "muon": {},
  "normuon": dict(normuon=True),
  "aol": dict(
    preconditioning="aol",
    ns_steps=4,
    orthogonalizer=normax.Orthogonalizer(method="gram_newton_schulz"),
  ),
  "adaptive": dict(adaptive=True),
}


@pytest.mark.parametrize("variant", list(MUON_VARIANTS))
def test_idle_experts_of_a_trained_moe_get_zero_muon_updates(moe, variant):
  params, roles, loss, tokens = moe
  tx = normax.muon(0.02, roles=roles, **MUON_VARIANTS[variant])
  steps, _ = train(tx, params, loss, tokens, 3)
  for _, u, _ in steps:
    for path in EXPERTS:
      assert np.all(np.isfinite(u[path])), path
      assert not np.any(u[path][..., IDLE, :, :]), (variant, path)
      assert np.any(u[path][..., 0, :, :]), (variant, path)  # The busy ones do move.


def spectral_norms(w: np.ndarray) -> np.ndarray:
  """Spectral's norm ``√(d_in/d_out)·σ_max`` of every expert matrix, by numpy."""
  d_in, d_out = w.shape[-2:]
  sigma = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)[..., 0]
  return np.sqrt(d_in / d_out) * sigma


def on_boundary(params, rho: float):
  """The parameters with every expert matrix scaled onto the sphere ``‖W‖ = ρ``."""
  params = jax.tree.map(np.array, params)
  for path in EXPERTS:
    block, name = path.split("/")
    w = params[block][name]
    params[block][name] = (w * (rho / spectral_norms(w))[..., None, None]).astype(w.dtype)
  return jax.tree.map(jnp.asarray, params)


@pytest.mark.parametrize("method", ["svd", "gram_newton_schulz"])  # exact, and the default
def test_constrained_experts_stay_in_their_ball(moe, method):
  # Scion's constrained step x ← (1 − γ)x − γρ·dualize(d) from the ball's boundary: every
  # expert stays inside ‖x‖ ≤ ρ; the idle one only shrinks, by (1 − γ) per step.
  params, roles, loss, tokens = moe
  labels, specs = normax.presets.scion_gpt(roles=roles)
  norm = normax.Spectral(method=method)
  specs["hidden"] = dataclasses.replace(specs["hidden"], norm=norm)
  rho, lr = specs["hidden"].radius, 0.25
  tx = normax.scion(lr, specs, labels, constrained=True)
  steps, final = train(tx, on_boundary(params, rho), loss, tokens, 5)
  history = [p for _, _, p in steps] + [flat(final)]
  # Newton–Schulz's polar factor is approximate: 5 steps of the quintic map a singular value
  # in (0, 1] to at most 1.2024 (its maximum over that interval), so a step may overshoot the
  # ball by that factor.
  bound = rho * (1 + 1e-5 if method == "svd" else 1.2024)
  for t, p in enumerate(history):
    for path in EXPERTS:
      norms = spectral_norms(p[path])
      assert np.all(norms <= bound), (path, t, norms.max() / rho)
      idle = norms[..., IDLE]
      np.testing.assert_allclose(idle, rho * (1 - lr) ** t, rtol=1e-4, err_msg=path)
