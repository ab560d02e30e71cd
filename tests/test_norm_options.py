"""The scaling variants of the Scion reference norms, against independent numpy formulas.

The Scion code (LIONS-EPFL/scion, ``scion.py``) stores a weight PyTorch-style, ``(d_out, d_in)``;
normax stores Flax kernels ``(d_in, d_out)``. Each reference below is that code's LMO formula
written in numpy for the ``(d_out, d_in)`` matrix ``Gᵀ`` (without its ``1e-8`` epsilon), and is
compared with ``normax``'s ``dualize`` of ``G = (Gᵀ)ᵀ`` (the LMO is its negative).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normax

RNG = np.random.default_rng(0)
G = RNG.standard_normal((12, 5)).astype(np.float32)  # (d_in, d_out) = (12, 5): tall kernel.
W = RNG.standard_normal((5, 12)).astype(np.float32)  # (d_in, d_out) = (5, 12): wide kernel.


def polar(x):
  u, _, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
  return u @ vt


# -- the reference code's formulas on a (d_out, d_in) matrix, the torch layout -----------------


def ref_spectral(gt, normalized=True, use_max=False):
  d_out, d_in = gt.shape
  scale = math.sqrt(d_out / d_in) if normalized else math.sqrt(d_out)
  if use_max:
    scale = max(1.0, scale)
  return polar(gt) * scale


def ref_colnorm(gt, normalized=False):
  rms = np.sqrt(np.sum(gt.astype(np.float64) ** 2, axis=0, keepdims=True)) / math.sqrt(gt.shape[0])
  if normalized:
    rms = rms * gt.shape[1]
  return gt / rms


def ref_rownorm(gt, normalized=True):
  rms = np.sqrt(np.sum(gt.astype(np.float64) ** 2, axis=-1, keepdims=True))
  if normalized:
    rms = rms * math.sqrt(gt.shape[-1])
  return gt / rms


def ref_sign(gt, normalized=True):
  return np.sign(gt) / (gt.shape[1] if normalized else 1)


@pytest.mark.parametrize("g", [G, W], ids=["tall", "wide"])
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("use_max", [True, False])
def test_spectral_scaling_variants_match_the_reference(g, normalized, use_max):
  norm = normax.Spectral(method="svd", normalized=normalized, max=use_max)
  expected = ref_spectral(g.T, normalized, use_max).T
  np.testing.assert_allclose(norm.dualize(g), expected, rtol=2e-4, atol=2e-5)
  # The norm and its dual match the direction: <g, dualize g> = dual_norm(g), norm(dualize) = 1.
  s = np.linalg.svd(g.astype(np.float64), compute_uv=False)
  scale = np.sum(expected * polar(g)) / min(g.shape)  # The factor s of s·UVᵀ.
  np.testing.assert_allclose(norm.dual_norm(g), scale * s.sum(), rtol=1e-4)
  np.testing.assert_allclose(norm.norm(expected.astype(np.float32)), 1.0, rtol=1e-4)


def test_spectral_max_is_muons_factor_on_the_pixel_input_layer():
  # 784 pixels -> 128 units: √(d_out/d_in) = 0.40, the max variant keeps 1.
  g = jnp.asarray(RNG.standard_normal((784, 128)), jnp.float32)
  plain = normax.Spectral(method="svd").dualize(g)
  wide = normax.Spectral(method="svd", max=True).dualize(g)
  np.testing.assert_allclose(wide, plain / math.sqrt(128 / 784), rtol=1e-4, atol=1e-6)
  assert normax.Spectral(max=True).dimension_scale(784, 128) == 1.0
  assert normax.SpectralConv(max=True).dimension_scale(4, 16) == 2.0


@pytest.mark.parametrize("normalized", [True, False])
def test_colnorm_variants_match_the_reference(normalized):
  # The reference's embedding layout (vocab, d) with transpose=True is normax's (d_in, d_out).
  expected = ref_colnorm(G.T, normalized).T
  norm = normax.ColNorm(normalized=normalized)
  np.testing.assert_allclose(norm.dualize(G), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(norm.dual_norm(G), np.sum(G * expected), rtol=1e-5)
  np.testing.assert_allclose(norm.norm(expected.astype(np.float32)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("normalized", [True, False])
def test_rownorm_variants_match_the_reference(normalized):
  expected = ref_rownorm(G.T, normalized).T
  norm = normax.RowNorm(normalized=normalized)
  np.testing.assert_allclose(norm.dualize(G), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(norm.dual_norm(G), np.sum(G * expected), rtol=1e-5)
  np.testing.assert_allclose(norm.norm(expected.astype(np.float32)), 1.0, rtol=1e-5)
  if not normalized:
    np.testing.assert_allclose(norm.dualize(G), normax.LpToLinf(2.0).dualize(G), rtol=1e-6)


@pytest.mark.parametrize(
  "norm_cls, ref", [(normax.ColNorm, ref_colnorm), (normax.RowNorm, ref_rownorm)]
)
@pytest.mark.parametrize("normalized", [True, False])
def test_transpose_reads_a_fan_out_fan_in_leaf(norm_cls, ref, normalized):
  # A (d_out, d_in) leaf is the torch layout: transpose=True gives the reference directly.
  norm = norm_cls(normalized=normalized, transpose=True)
  np.testing.assert_allclose(norm.dualize(G.T), ref(G.T, normalized), rtol=1e-5, atol=1e-6)
  plain = norm_cls(normalized=normalized)
  np.testing.assert_allclose(norm.dual_norm(G.T), plain.dual_norm(G), rtol=1e-6)
  np.testing.assert_allclose(norm.norm(G.T), plain.norm(G), rtol=1e-6)


def test_sign_transpose_is_the_tied_head():
  # A tied (vocab, features) table used as the head x ↦ x @ Eᵀ has fan-in = features.
  table = RNG.standard_normal((50, 8)).astype(np.float32)
  norm = normax.Sign(transpose=True)
  np.testing.assert_allclose(norm.dualize(table), ref_sign(table, True), rtol=1e-6)
  np.testing.assert_allclose(norm.dual_norm(table), np.abs(table).sum() / 8, rtol=1e-5)
  np.testing.assert_allclose(norm.norm(table), 8 * np.abs(table).max(), rtol=1e-6)
  assert norm.fan_in(table.shape) == 8 and normax.Sign().fan_in(table.shape) == 50


def test_sign_zero_init():
  w = normax.Sign(zero_init=True).init(jax.random.key(0), (8, 4))
  assert w.shape == (8, 4) and not np.any(w)
  w = normax.Sign().init(jax.random.key(0), (8, 4))
  np.testing.assert_allclose(np.abs(w), 1 / 8)


@pytest.mark.parametrize(
  "norm",
  [
    normax.ColNorm(normalized=True),
    normax.ColNorm(transpose=True),
    normax.RowNorm(normalized=False),
    normax.RowNorm(transpose=True),
    normax.Sign(transpose=True),
    normax.Spectral(max=True),
    normax.Spectral(normalized=False),
  ],
  ids=repr,
)
def test_projection_and_init_follow_the_variant(norm):
  big = 10 * G
  for sphere in (False, True):
    out = normax.project(big, norm, radius=2.0, sphere=sphere)
    np.testing.assert_allclose(norm.norm(out), 2.0, rtol=1e-4)
  inside = normax.project(big, norm, radius=1e6)
  np.testing.assert_allclose(inside, big, atol=1e-5 * np.abs(big).max())  # Inside: unchanged.
  np.testing.assert_allclose(norm.norm(norm.init(jax.random.key(1), G.shape)), 1.0, rtol=1e-4)


def test_grouped_dualize_keeps_each_leafs_scale():
  # Leaves with different dimension-factor variants share one batched orthogonalization.
  tree = {"a": G, "b": G, "c": G.T}
  norms = {"a": normax.Spectral(), "b": normax.Spectral(max=True), "c": normax.Spectral()}
  batched, _ = normax.scale_by_lmo(norms).update(tree, None)
  for k in tree:
    np.testing.assert_allclose(batched[k], norms[k].dualize(tree[k]), rtol=1e-4, atol=1e-5)
