"""The batched oracle: ``scale_by_lmo(batch=True)`` equals the per-leaf ``batch=False``.

``batch=True`` groups spectral leaves by their orthogonalizer (``normax.Orthogonalizer``: the
Newton–Schulz settings), the short and long side of their matrix view and their dtype, turns the
minority orientation, stacks each group and orthogonalizes it in one call. The tree below mixes
every case: wide and tall members of one group, a scanned stack, conv kernels (one, and a scanned
stack of them) whose matrix view joins a dense group, a group with a tall majority, a zero matrix
inside a group, a leaf alone in its group (other Newton–Schulz settings), and leaves under other
norms or none.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import normax

# One Newton–Schulz step: the grouping does not depend on the step count, compilation time does.
STEPS = 1

# name -> (shape, dtype, norm key); the norm key picks the method-specific norm below.
LEAVES = {
  "wide": ((4, 16), jnp.float32, "spectral"),
  "tall": ((16, 4), jnp.float32, "spectral"),
  "stack": ((3, 4, 16), jnp.float32, "spectral"),
  "conv": ((2, 2, 1, 16), jnp.float32, "conv"),  # Matrix view (4 taps · 1, 16) = (4, 16).
  "conv_stack": ((2, 4, 1, 16), jnp.float32, "conv_stack"),  # 2 kernels, each (4, 16).
  "mlp_in": ((6, 12), jnp.float32, "spectral"),
  "mlp_out": ((12, 6), jnp.float32, "spectral"),
  "mlp_out_zero": ((12, 6), jnp.float32, "spectral"),
  "wide_other_schedule": ((4, 16), jnp.float32, "polar_express"),
  "head": ((16, 10), jnp.float32, "sign"),
  "bias": ((16,), jnp.float32, "bias_rms"),
  "frozen": ((4, 4), jnp.float32, None),
}
# (4, 16): a wide majority, one tall member; (6, 12): a tall majority; the other schedule alone.
GROUPS = 3


def norms_for(method):
  kw = {"method": method} if method == "svd" else {"method": method, "steps": STEPS}
  return {
    "spectral": normax.Spectral(**kw),
    "conv": normax.SpectralConv(**kw),
    "polar_express": normax.Spectral(coefficients="polar_express", **kw),
    "conv_stack": normax.SpectralConv(spatial_dims=1, **kw),
    "sign": normax.Sign(),
    "bias_rms": normax.BiasRMS(),
    None: None,
  }


def tree(seed=0):
  # numpy draws: jax.random would compile a sampler for every shape.
  rng = np.random.default_rng(seed)
  out = {
    name: jnp.asarray(rng.standard_normal(shape), dtype)
    for name, (shape, dtype, _) in LEAVES.items()
  }
  out["mlp_out_zero"] = jnp.zeros_like(out["mlp_out_zero"])
  return out


def norm_tree(method):
  table = norms_for(method)
  return {name: table[key] for name, (_, _, key) in LEAVES.items()}


def updates(method, batch, g):
  tx = normax.scale_by_lmo(norm_tree(method), batch=batch)
  return jax.jit(tx.update)(g, tx.init(g))[0]


def dots(method, batch, g):
  tx = normax.scale_by_lmo(norm_tree(method), batch=batch)
  jaxpr = jax.make_jaxpr(lambda u: tx.update(u, tx.init(u))[0])(g)
  return sum(e.primitive.name == "dot_general" for e in jaxpr.jaxpr.eqns)


def test_batched_equals_per_leaf():
  method = "newton_schulz"
  g = tree()
  batched, single = updates(method, True, g), updates(method, False, g)
  for name in LEAVES:
    a, b = batched[name], single[name]
    assert a.shape == b.shape and a.dtype == b.dtype, name
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), err_msg=name)
  np.testing.assert_array_equal(batched["mlp_out_zero"], 0.0)
  np.testing.assert_array_equal(batched["frozen"], g["frozen"])


def test_batching_shares_one_call_per_group():
  # A quintic step costs three matmuls: one batched chain per group, not one per leaf.
  g = tree()
  spectral_leaves = sum(key not in ("sign", "bias_rms", None) for _, _, key in LEAVES.values())
  assert dots("newton_schulz", False, g) == 3 * STEPS * spectral_leaves
  assert dots("newton_schulz", True, g) == 3 * STEPS * GROUPS


def test_batched_svd_matches_numpy_polar_factor():
  """With exact orthogonalization the batched result is √(d_out/d_in)·UVᵀ of each matrix."""
  g = tree(1)
  out = updates("svd", True, g)
  for name in ("wide", "tall", "stack", "mlp_in", "mlp_out", "wide_other_schedule"):
    x = np.asarray(g[name], np.float64)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    d_in, d_out = x.shape[-2:]
    np.testing.assert_allclose(out[name], np.sqrt(d_out / d_in) * u @ vt, atol=2e-5, err_msg=name)
  for name in ("conv", "conv_stack"):  # (k·c_in, c_out) = (4, 16) per kernel, k = 4 taps.
    x = np.asarray(g[name], np.float64).reshape(-1, 4, 16)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    want = (np.sqrt(16 / 1) / 4 * u @ vt).reshape(g[name].shape)
    np.testing.assert_allclose(out[name], want, atol=2e-5, err_msg=name)


# One setting other than the default for every field of the orthogonalizer. Each pair of norms
# below differs in one field only; a field missing here fails the test, so a new setting of the
# orthogonalizer comes with its check that it separates groups.
OTHER_SETTING = {
  "method": "svd",
  "steps": 2,
  "coefficients": "cubic",
  "compute_dtype": "bfloat16",
  "precision": "highest",
  "sharding": "gather",
  "preconditioning": "aol",
  "eps": 1.0,
  "bounded": True,
}


def polar_ops(tx, g):
  jaxpr = jax.make_jaxpr(lambda u: tx.update(u, tx.init(u))[0])(g)
  return sum(e.primitive.name in ("dot_general", "svd") for e in jaxpr.jaxpr.eqns)


def test_every_orthogonalizer_setting_separates_groups():
  fields = [f.name for f in dataclasses.fields(normax.Orthogonalizer)]
  assert sorted(OTHER_SETTING) == sorted(fields)
  rng = np.random.default_rng(2)
  g = {name: jnp.asarray(rng.standard_normal((4, 16)), jnp.float32) for name in ("a", "b")}
  for field, value in OTHER_SETTING.items():
    base = normax.Spectral(steps=1)
    other = dataclasses.replace(base, **{field: value})
    assert base.orthogonalizer != other.orthogonalizer, field
    assert getattr(other.orthogonalizer, field) == getattr(other, field), field
    norms = {"a": base, "b": other}
    batched = normax.scale_by_lmo(norms, batch=True)
    single = normax.scale_by_lmo(norms, batch=False)
    # Not stacked together: the same matmuls (or SVDs) as one call per leaf ...
    assert polar_ops(batched, g) == polar_ops(single, g), field
    # ... and each leaf dualized under its own settings.
    a = jax.jit(batched.update)(g, batched.init(g))[0]
    b = jax.jit(single.update)(g, single.init(g))[0]
    for name in g:
      np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=f"{field}: {name}")
      np.testing.assert_allclose(
        a[name], norms[name].dualize(g[name]), atol=1e-6, err_msg=f"{field}: {name}"
      )


def test_equal_orthogonalizers_share_a_group():
  """Norms that differ outside the orthogonalizer (the dimension factor) still share one call."""
  g = {name: jnp.ones((4, 16), jnp.float32) for name in ("a", "b")}
  norms = {"a": normax.Spectral(steps=1), "b": normax.Spectral(steps=1, max=True)}
  assert norms["a"].orthogonalizer == norms["b"].orthogonalizer
  batched = normax.scale_by_lmo(norms, batch=True)
  assert polar_ops(batched, g) == 3  # One quintic step on the stack of two.
