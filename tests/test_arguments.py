"""Every numeric argument of every public constructor refuses a negative, NaN or inf value.

The test walks ``normax.__all__`` and ``normax.presets.__all__``: every function and class
defined in normax, every parameter whose default is a number or whose annotation names
``float`` or ``int``. Each gets -1, NaN and inf, as a Python number, a NumPy scalar and a JAX
scalar, on top of a call that is valid otherwise (:data:`BASE`); the call must raise a
``ValueError`` or ``TypeError`` that names the parameter. A public callable with a numeric
parameter and no entry in :data:`BASE` fails the test, so a new constructor cannot slip by.
"""

import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normax
import normax.presets

_SPECS = {"h": normax.LayerSpec("sign")}
_MATRIX = jnp.ones((2, 3))

# The arguments that make each call valid apart from the number under test.
BASE = {
  "normax.L1ToLp": {},
  "normax.LpToLinf": {},
  "normax.LayerSpec": {"norm": "sign"},
  "normax.MatrixView": {"fan_in": 0, "fan_out": 1},
  "normax.Orthogonalizer": {},
  "normax.QKLayer": {"query": "q/kernel", "key": "k/kernel"},
  "normax.Rule": {"pattern": "*", "label": "h"},
  "normax.Spectral": {},
  "normax.SpectralConv": {},
  "normax.adaptive_step": {"inner": optax.identity(), "norms": "sign"},
  "normax.checked_schedule": {"schedule": optax.constant_schedule(0.1)},
  "normax.add_cautious_weight_decay": {},
  "normax.add_constrained_decay": {},
  "normax.hyperball": {"learning_rate": 0.1},
  "normax.momentum": {},
  "normax.muon": {"learning_rate": 0.1},
  "normax.muon_free": {},
  "normax.newton_schulz": {"x": _MATRIX},
  "normax.normalized_sgd": {"learning_rate": 0.1},
  "normax.polar_express_coefficients": {},
  "normax.precondition": {"x": _MATRIX},
  "normax.max_logits": {"query": jnp.ones((1, 2, 1, 4)), "key": jnp.ones((1, 2, 1, 4))},
  "normax.qk_clip": {"layers": "attn"},
  "normax.project": {"params": _MATRIX, "norms": "sign"},
  "normax.project_to_norm_ball": {"norms": "sign"},
  "normax.scale_by_dual_norm": {"norms": "sign"},
  "normax.scale_by_neuron_rms": {},
  "normax.scale_by_radius": {"radius": 1.0},
  "normax.scale_by_shampoo": {},
  "normax.scale_by_soap": {},
  "normax.schedule_bound": {},
  "normax.scion": {"learning_rate": 0.1, "specs": _SPECS, "labels": "h"},
  "normax.scion_free": {"specs": _SPECS, "labels": "h"},
  "normax.sign_descent": {"learning_rate": 0.1},
  "normax.steepest_descent": {"learning_rate": 0.1, "norm": "sign"},
  "normax.presets.scion_cnn": {},
  "normax.presets.scion_gpt": {},
  "normax.presets.scion_gpt_tied": {},
  "normax.presets.scion_mlp": {},
}

# Values that are valid for a parameter although the walk tries them: ℓ∞ is an ℓp norm; a
# checked schedule may allow negative values, or have no upper bound; axes may be negative.
VALID = {
  ("normax.L1ToLp", "p", "inf"),
  ("normax.LpToLinf", "p", "inf"),
  ("normax.checked_schedule", "low", "negative"),
  ("normax.checked_schedule", "high", "inf"),
  # The estimate's growth cap: inf is no cap.
  *((name, "growth", "inf") for name in ("normax.adaptive_step", "normax.scion_free")),
  ("normax.muon_free", "growth", "inf"),
  # Axes count from the end when negative, as in NumPy.
  ("normax.QKLayer", "part_axis", "negative"),
  *(("normax.MatrixView", axis, "negative") for axis in ("fan_in", "fan_out", "stack", "spatial")),
}


def _named(name: str, param: str) -> str:
  """The word the error must contain: a preset's radii reach it through a LayerSpec."""
  return "radius" if name.startswith("normax.presets.") and param.endswith("radius") else param


def _public():
  out = []
  for module in (normax, normax.presets):
    for name in module.__all__:
      obj = getattr(module, name)
      if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("normax"):
        out.append((f"{module.__name__}.{name}", obj))
  return out


def _numeric(param: inspect.Parameter) -> bool:
  default = param.default
  if isinstance(default, bool):
    return False
  if isinstance(default, int | float):
    return True
  # A number at the top of the annotation (``int | None``), not inside a container's.
  return bool(re.search(r"\b(float|int)\b", re.sub(r"\[.*\]", "", str(param.annotation))))


def _integer(param: inspect.Parameter) -> bool:
  return isinstance(param.default, int) or re.match(r"int\b", str(param.annotation)) is not None


CASES = [
  (name, obj, p.name, _integer(p))
  for name, obj in _public()
  for p in inspect.signature(obj).parameters.values()
  if _numeric(p)
]


def _forms(value: float, integer: bool):
  if integer and math.isfinite(value):
    return {"python": int(value), "numpy": np.int32(value), "jax": jnp.asarray(value, jnp.int32)}
  return {"python": value, "numpy": np.float32(value), "jax": jnp.asarray(value, jnp.float32)}


def test_the_walk_finds_the_constructors_and_has_a_valid_call_for_each():
  names = {name for name, *_ in CASES}
  assert {"normax.muon", "normax.scion", "normax.momentum", "normax.Spectral"} <= names
  missing = sorted(names - set(BASE))
  assert not missing, f"Public callables with numeric arguments and no entry in BASE: {missing}"
  for name, obj in _public():
    if name in BASE:
      obj(**BASE[name])  # Valid as it stands: an error below is the bad number's.


@pytest.mark.parametrize("bad", ["negative", "nan", "inf"])
@pytest.mark.parametrize(
  "name,obj,param,integer", CASES, ids=[f"{name.split('.')[-1]}.{p}" for name, _, p, _ in CASES]
)
def test_every_numeric_argument_refuses_negative_nan_and_inf(name, obj, param, integer, bad):
  if (name, param, bad) in VALID:
    pytest.skip(f"{bad} is a valid {param}")
  value = {"negative": -1.0, "nan": math.nan, "inf": math.inf}[bad]
  for form, x in _forms(value, integer).items():
    with pytest.raises((ValueError, TypeError)) as info:
      obj(**{**BASE[name], param: x})
    assert re.search(rf"\b{_named(name, param)}\b", str(info.value)), (form, info.value)


@pytest.mark.parametrize("form", ["python", "numpy", "jax"])
def test_momentum_in_zero_one_is_checked_for_every_kind_of_scalar(form):
  for beta in (-0.5, 1.0, 1.5):
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\)"):
      normax.momentum(_forms(beta, False)[form])
  normax.momentum(_forms(0.5, False)[form])


def test_checked_schedule_raises_under_jit_and_scan_naming_the_step():
  lr = normax.checked_schedule(lambda t: 0.1 - 0.01 * t, "learning_rate")
  beta = normax.checked_schedule(lambda t: 0.5 + 0.1 * t, "beta", 0.0, 1.0, high_open=True)
  tx = normax.scion(lr, {"h": normax.LayerSpec("sign")}, "h", beta=beta)
  params = {"w": jnp.ones((2, 2))}

  def run(steps):
    def step(state, t):
      u, state = tx.update(params, state, params)
      return state, u["w"].sum()

    return jax.lax.scan(step, tx.init(params), jnp.arange(steps))[1]

  assert np.isfinite(np.asarray(jax.jit(run, static_argnums=0)(5))).all()  # β = 0.9 at step 4.
  with pytest.raises(Exception, match=r"beta schedule returned 1\.0\d* at step 5"):
    jax.jit(run, static_argnums=0)(8)
  with pytest.raises(ValueError, match=r"learning_rate schedule returned -0\.0\d+ at step 11"):
    lr(jnp.asarray(11))  # Outside jit: the ValueError itself.
  assert float(normax.checked_schedule(optax.constant_schedule(2.0))(3)) == 2.0
  with pytest.raises(ValueError, match="returned nan"):
    normax.checked_schedule(lambda t: jnp.nan)(0)


# Every former argument name of a public function, and the spelling its error must name.
RENAMED = {
  ("normax.momentum", "dtype"): "mu_dtype=",
  ("normax.scion", "momentum_dtype"): "mu_dtype=",
  ("normax.scion_free", "momentum_dtype"): "mu_dtype=",
  ("normax.sign_descent", "momentum_dtype"): "mu_dtype=",
  ("normax.normalized_sgd", "momentum_dtype"): "mu_dtype=",
  ("normax.muon", "momentum_dtype"): "mu_dtype=",
  ("normax.muon", "ns_coefficients"): "ns_coeffs=",
  ("normax.muon", "ns_method"): "orthogonalizer=normax.Orthogonalizer(method=...)",
  ("normax.muon", "ns_sharding"): "orthogonalizer=normax.Orthogonalizer(sharding=...)",
  ("normax.muon", "ns_dtype"): "orthogonalizer=normax.Orthogonalizer(compute_dtype=...)",
  ("normax.muon", "ns_precision"): "orthogonalizer=normax.Orthogonalizer(precision=...)",
  ("normax.muon_free", "momentum_dtype"): "mu_dtype=",
  ("normax.muon_free", "ns_coefficients"): "ns_coeffs=",
  ("normax.muon_free", "ns_method"): "orthogonalizer=normax.Orthogonalizer(method=...)",
}


def test_every_former_argument_name_is_a_type_error_naming_the_new_spelling():
  found = {
    (name, old): new for name, obj in _public() for old, new in getattr(obj, "renamed", {}).items()
  }
  assert found == RENAMED
  for (name, old), new in RENAMED.items():
    obj = dict(_public())[name]
    assert old not in inspect.signature(obj).parameters, (name, old)
    with pytest.raises(TypeError) as info:
      obj(**BASE.get(name, {}), **{old: None})
    assert f"{name}() got {old}=, a former name: pass {new}" in str(info.value)
