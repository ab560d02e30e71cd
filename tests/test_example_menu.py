"""The examples' optimizer menu (examples/_common.py): the variants are wired as documented."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "examples") not in sys.path:
  sys.path.insert(0, os.path.join(ROOT, "examples"))

import _common  # noqa: E402


def tree(key=0):
  k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
  params = {"w": jax.random.normal(k1, (6, 10)) / 3, "b": jnp.zeros(10)}
  grads = {"w": jax.random.normal(k2, (6, 10)), "b": jax.random.normal(k3, (10,))}
  return params, grads


def run(tx, params, grads_list):
  state, out = tx.init(params), []
  for g in grads_list:
    u, state = tx.update(g, state, params)
    out.append(u)
  return out


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_kronecker_optimizer_routes_matrices_and_vectors(name):
  # Matrices get Shampoo/SOAP, vectors Adam, then decay and the learning rate: the same chain
  # built by hand from the pieces (each checked against numpy in test_shampoo / test_soap).
  params, _ = tree()
  grads = [tree(k)[1] for k in range(1, 4)]
  lr, wd = 0.05, 0.1
  got = run(_common.kronecker_optimizer(name, lr, weight_decay=wd), params, grads)
  if name == "shampoo":
    matrix = optax.chain(
      normax.scale_by_shampoo(beta2=0.999, precondition_every=10,
                              graft=normax.Sign(normalized=False)),
      normax.momentum(0.9),
    )  # fmt: skip
  else:
    matrix = normax.scale_by_soap(b1=0.95, b2=0.95, precondition_every=10)
  w_only = run(matrix, params["w"], [g["w"] for g in grads])
  b_only = run(optax.scale_by_adam(0.9, 0.999), params["b"], [g["b"] for g in grads])
  for u, w, b in zip(got, w_only, b_only, strict=True):
    np.testing.assert_allclose(u["w"], -lr * (w + wd * params["w"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(u["b"], -lr * (b + wd * params["b"]), rtol=1e-5, atol=1e-7)


def test_kronecker_optimizer_unknown_name():
  with pytest.raises(ValueError, match="'shampoo' or 'soap'"):
    _common.kronecker_optimizer("adagrad", 0.1)


def test_consistent_rms_variant_has_update_rms_point_two():
  # Moonlight's claim, checked from the update itself: on a Muon leaf the first step of
  # muon(lr, consistent_rms=0.2) has RMS 0.2·lr whatever the shape (5 quintic steps leave the
  # singular values within ~0.3 of 1, hence the tolerance).
  for shape in [(16, 64), (64, 16), (32, 32)]:
    params = {"w": jnp.zeros(shape)}
    g = {"w": jax.random.normal(jax.random.key(1), shape)}
    tx = normax.muon(0.1, **_common.MUON_VARIANTS["muon_rms"])
    u, _ = tx.update(g, tx.init(params), params)
    rms = float(jnp.sqrt(jnp.mean(u["w"] ** 2)))
    assert abs(rms / 0.1 - 0.2) < 0.2 * 0.15, (shape, rms)


def test_muon_variants_are_muon_options():
  # Each variant changes muon's update (so the flag reached it), none is a no-op.
  params, g = tree()
  params, g = {"w": params["w"]}, {"w": g["w"]}
  base = run(normax.muon(0.1), params, [g, g])[-1]["w"]
  for name, kw in _common.MUON_VARIANTS.items():
    u = run(normax.muon(0.1, **kw), params, [g, g])[-1]["w"]
    assert np.all(np.isfinite(u))
    if name == "muon":
      np.testing.assert_array_equal(u, base)
    else:
      assert not np.allclose(u, base, rtol=1e-3), name
