"""SOAP against a float64 numpy implementation of the algorithm, and its spectral limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_shampoo import grads_seq, np_blocks, np_unblock, run_jax, run_np

import normax


class NpSoap:
  """One matrix: Adam in the eigenbasis of the blocked Kronecker factors."""

  def __init__(self, b1, b2, bs, eps, block, every):
    self.b1, self.b2, self.bs, self.eps, self.block, self.every = b1, b2, bs, eps, block, every
    self.t, self.mu, self.state = 0, 0.0, {}

  def step(self, g):
    self.t += 1
    t, b1, b2, bs = self.t, self.b1, self.b2, self.bs
    self.mu = b1 * self.mu + (1 - b1) * g
    blocks, bshape = np_blocks(g, self.block)
    mu_blocks, _ = np_blocks(self.mu, self.block)
    out = {}
    for k, gb in blocks.items():
      left, right, ql, qr, nu = self.state.get(k, (0.0, 0.0, None, None, 0.0))
      left = bs * left + (1 - bs) * gb @ gb.T
      right = bs * right + (1 - bs) * gb.T @ gb
      if (t - 1) % self.every == 0:
        ql, qr = np.linalg.eigh(left)[1], np.linalg.eigh(right)[1]
      g_rot = ql.T @ gb @ qr
      m_rot = ql.T @ mu_blocks[k] @ qr
      nu = b2 * nu + (1 - b2) * g_rot**2
      step = (m_rot / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + self.eps)
      out[k] = ql @ step @ qr.T
      self.state[k] = (left, right, ql, qr, nu)
    return np_unblock(out, g.shape, bshape)


SHAPES = {"stack": (2, 5, 7), "tall": (6, 4), "square": (3, 3)}
SQUARE = {"stack": (2, 4, 4), "square": (3, 3)}


# Adam's diagonal scaling is not invariant to the choice of basis inside a
# degenerate eigenspace (a rank-deficient factor), which numpy and jax pick
# differently; such directions carry no gradient only until the next refresh.
# So a basis kept across steps (``every > 1``) is tested on square blocks,
# whose single-gradient factors are full rank.
@pytest.mark.parametrize(
  "block, every, bs, shapes", [(None, 1, None, SHAPES), (4, 1, 0.5, SHAPES), (2, 3, 0.7, SQUARE)]
)
def test_matches_numpy(block, every, bs, shapes):
  seq = grads_seq(shapes, 5, seed=3)
  tx = normax.scale_by_soap(
    b1=0.9, b2=0.8, eps=1e-3, shampoo_beta=bs, block_size=block, precondition_every=every
  )
  got, update = run_jax(tx, seq)
  want = run_np(lambda: NpSoap(0.9, 0.8, 0.8 if bs is None else bs, 1e-3, block, every), seq)
  for g, w in zip(got, want, strict=True):
    for k in shapes:
      np.testing.assert_allclose(g[k], w[k], rtol=2e-3, atol=2e-3)
  assert update._cache_size() == 1  # no recompilation after the first step


def test_no_moving_averages_is_the_spectral_lmo():
  """b1 = b2 = β_s = 0: Q_L sign(Σ) Q_Rᵀ = UVᵀ (up to ε)."""
  rng = np.random.default_rng(2)
  shapes = {"square": (4, 4), "tall": (6, 3), "stack": (2, 3, 5)}
  g = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
  tx = normax.scale_by_soap(b1=0.0, b2=0.0, shampoo_beta=0.0, eps=1e-3, precondition_every=1)
  u, _ = jax.jit(tx.update)(g, tx.init(g))
  spectral = normax.Spectral(method="svd")
  for k, s in shapes.items():
    uvt = np.asarray(spectral.dualize(g[k])) / np.sqrt(s[-1] / s[-2])
    np.testing.assert_allclose(u[k], uvt, atol=5e-3)


def test_zero_gradient_gives_zero_update():
  g = {"w": jnp.zeros((4, 3))}
  tx = normax.scale_by_soap(block_size=2)
  u, _ = jax.jit(tx.update)(g, tx.init(g))
  np.testing.assert_array_equal(u["w"], np.zeros((4, 3)))


def test_vector_leaf_is_an_error_naming_it():
  with pytest.raises(ValueError, match=r"\['b'\] \(3,\)"):
    normax.scale_by_soap().init({"b": jnp.zeros(3)})


def test_sharded_parameters_under_jit():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", None))
  g = grads_seq({"w": (4, 6)}, 1)[0]
  tx = normax.scale_by_soap(block_size=4)
  want, _ = tx.update(g, tx.init(g))
  gs = jax.device_put(g, sharding)
  got, _ = jax.jit(tx.update)(gs, tx.init(gs))
  np.testing.assert_allclose(got["w"], want["w"], rtol=1e-5, atol=1e-6)


def test_soap_bases_do_not_depend_on_the_gradients_scale():
  # Factors formed as GGᵀ overflowed at g·1e20 (eigh of inf: NaN updates) and underflowed at
  # g·1e-20; they are stored with a scale of their own, and only their eigenvectors count.
  rng = np.random.default_rng(0)
  g = {"w": jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)}
  tx = normax.scale_by_soap(precondition_every=1)
  _, ref = tx.update(g, tx.init(g))
  for c in (2.0**-66, 2.0**66, 2.0**100):
    u, state = tx.update({"w": g["w"] * c}, tx.init(g))
    assert bool(jnp.isfinite(u["w"]).all()), c
    for got, want in ((state.left_basis, ref.left_basis), (state.right_basis, ref.right_basis)):
      np.testing.assert_allclose(jnp.abs(got["w"]), jnp.abs(want["w"]), atol=1e-4, err_msg=str(c))
