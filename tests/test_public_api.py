"""Every public name of normax documents itself with a runnable example (doctests run in CI)."""

import inspect
import pathlib
import re

import normax
import normax.presets


def _public(module):
  names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
  return [(f"{module.__name__}.{n}", getattr(module, n)) for n in names]


PUBLIC = [
  (name, obj)
  for name, obj in _public(normax) + _public(normax.presets)
  if (inspect.isfunction(obj) or inspect.isclass(obj))
  and getattr(obj, "__module__", "").startswith("normax")
]


def test_every_public_name_is_in_the_api_reference():
  api = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
  documented = set(re.findall(r"\bnormax\.([\w.]+)", api))
  missing = [n for n in normax.__all__ if n not in documented and n != "presets"]
  missing += [f"presets.{n}" for n in normax.presets.__all__ if f"presets.{n}" not in documented]
  assert not missing, f"Public names missing from docs/api.md (add an autodoc entry): {missing}"


def test_every_public_function_and_class_has_a_runnable_example():
  missing = [name for name, obj in PUBLIC if ">>>" not in (inspect.getdoc(obj) or "")]
  assert PUBLIC and not missing, (
    f"No '>>>' example in the docstring of {missing}; add one (the doctests run it)."
  )


def test_constants_are_documented_in_their_module():
  import normax._muon as mu
  import normax._newton_schulz as ns
  import normax._schedules as sc

  constants = [name for name, obj in _public(normax) if isinstance(obj, tuple)]
  home = {
    "normax.CUBIC": sc,
    "normax.DEFAULT_MUON_RULES": mu,
    "normax.DION": sc,
    "normax.PRECONDITIONINGS": ns,
    "normax.QUINTIC": sc,
  }
  assert constants == list(home)
  for name, module in home.items():
    assert f">>> {name}" in module.__doc__, (
      f"{name} has no example in {module.__name__}'s docstring."
    )
