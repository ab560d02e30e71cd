"""Small helpers shared by the example scripts: the optimizer menu and the variants both scripts
build the same way, flags from a dataclass, schedules, JSON lines.

The scripts keep the interesting parts (models, Scion's recipe, the training loop) in their own
file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import jax
import optax

import normax

#: The update rules both training scripts offer (``--optimizer``): constrained and unconstrained
#: Scion, normax's Muon and its variants, optax's Muon, AdamW, the learning-rate-free Scion and
#: Muon, Shampoo and SOAP.
OPTIMIZERS = (
  "scion", "uscion", "muon", "normuon", "muon_aol", "muon_rms", "optax_muon", "adamw",
  "scion_free", "muon_free", "shampoo", "soap",
)  # fmt: skip
Optimizer = typing.Literal[OPTIMIZERS]  # type: ignore[valid-type]

#: ``normax.muon``'s arguments for each Muon variant of the menu:
#:
#: - ``normuon``: NorMuon (Li et al., 2025), the orthogonalized update normalized per output
#:   neuron by a second-moment EMA;
#: - ``muon_aol``: Turbo-Muon's AOL preconditioning with one Newton–Schulz step fewer (4);
#: - ``muon_rms``: Moonlight's consistent update RMS, ``0.2·√max(d_in, d_out)·UVᵀ``, which lets
#:   the Muon and AdamW parts share one learning rate and weight decay (the scripts pass them).
MUON_VARIANTS = {
  "muon": {},
  "normuon": dict(normuon=True),
  "muon_aol": dict(ns_steps=4, preconditioning="aol"),
  "muon_rms": dict(consistent_rms=0.2),
}


def kronecker_optimizer(
  name: str,
  learning_rate,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  weight_decay: float = 0.0,
  matrices=None,
) -> optax.GradientTransformation:
  """Shampoo or SOAP on the matrices (every leaf of rank ≥ 2, or where ``matrices(params)`` is
  True), Adam on the rest (gains, biases), decoupled weight decay and one learning rate.

  ``"shampoo"``: ``normax.scale_by_shampoo`` (factors' EMA ``b2``, inverse fourth roots refreshed
  every 10 steps) with its step size grafted from sign descent's (``Sign(normalized=False)``: a
  per-matrix step of RMS 1, as Adam's), then momentum ``b1``. ``"soap"``: ``normax.scale_by_soap``
  (the SOAP paper's ``b1 = b2 = 0.95``, basis refreshed every 10 steps).
  """
  if name == "shampoo":
    matrix = optax.chain(
      normax.scale_by_shampoo(beta2=b2, precondition_every=10, graft=normax.Sign(normalized=False)),
      normax.momentum(b1),
    )
  elif name == "soap":
    matrix = normax.scale_by_soap(b1=0.95, b2=0.95, precondition_every=10)
  else:
    raise ValueError(f"kronecker_optimizer: name must be 'shampoo' or 'soap', got {name!r}.")

  def labels(params):
    is_matrix = matrices(params) if matrices else jax.tree.map(lambda p: p.ndim >= 2, params)
    return jax.tree.map(lambda m: "matrix" if m else "vector", is_matrix)

  return optax.chain(
    optax.partition({"matrix": matrix, "vector": optax.scale_by_adam(b1, b2)}, labels),
    optax.add_decayed_weights(weight_decay),
    optax.scale_by_learning_rate(learning_rate),
  )


def _field_type(hint) -> tuple[Any, bool, tuple | None]:
  """``(base type, accepts None, choices)`` of a field's type hint (``int``, ``float | None``,
  ``Literal["mlp", "cnn"]``)."""
  optional = False
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    rest = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(rest) != 1:
      raise TypeError(f"Unsupported field type {hint!r}: use X or X | None.")
    hint, optional = rest[0], True
  if typing.get_origin(hint) is typing.Literal:
    choices = typing.get_args(hint)
    return type(choices[0]), optional, choices
  return hint, optional, None


def parse_number(text: str) -> float:
  """``"0.01"``, ``"1e-3"`` or ``"2**-6"`` (the learning-rate syntax of every script)."""
  if "**" in text:
    base, exponent = text.split("**")
    return float(base) ** float(exponent)
  return float(text)


def _parser(base: type):
  return parse_number if base is float else base


def _parse_optional(base: type):
  def parse(text: str):
    return None if text.lower() in ("none", "") else _parser(base)(text)

  parse.__name__ = base.__name__  # argparse names the type in its error messages.
  return parse


def parse_radii(text: str | None) -> dict[str, float]:
  """``"hidden=3,head=10"`` (or ``2**10`` values) as ``{"hidden": 3.0, "head": 10.0}``."""
  radii = {}
  for item in (text or "").split(","):
    if not item.strip():
      continue
    label, sep, value = item.partition("=")
    try:
      radii[label.strip()] = parse_number(value.strip())
    except ValueError:
      sep = ""
    if not sep or not label.strip():
      raise ValueError(
        f"radii {text!r}: expected 'label=value,...', e.g. 'hidden=3,head=10'."
      ) from None
  return radii


def with_radii(specs: dict, text: str | None) -> dict:
  """``specs`` (``{label: normax.LayerSpec}``) with the radii of ``text`` replaced."""
  radii = parse_radii(text)
  unknown = sorted(set(radii) - set(specs))
  if unknown:
    raise ValueError(
      f"--radii names label(s) {', '.join(unknown)}; this model's labels are"
      f" {', '.join(sorted(specs))}."
    )
  return {
    label: dataclasses.replace(spec, radius=radii.get(label, spec.radius))
    for label, spec in specs.items()
  }


def field_comments(cls: type) -> dict[str, str]:
  """The trailing ``# comment`` of each ``name: type = default`` line of a class's source."""
  try:
    source = inspect.getsource(cls)
  except (OSError, TypeError):
    return {}
  pattern = re.compile(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", re.MULTILINE)
  return {name: text.strip() for name, text in pattern.findall(source)}


def config_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
  """An ``argparse`` parser with one flag per field of the dataclass ``cls``.

  ``batch_size: int = 128`` becomes ``--batch-size N`` (``--batch_size`` works too), a
  ``bool`` ``--flag`` / ``--no-flag``, a ``Literal[...]`` a flag with those choices, and
  ``X | None`` accepts ``none``. A field's trailing comment is its help text.
  """
  parser = argparse.ArgumentParser(
    description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  hints, comments = typing.get_type_hints(cls), field_comments(cls)
  for field in dataclasses.fields(cls):
    base, optional, choices = _field_type(hints[field.name])
    names = [f"--{field.name.replace('_', '-')}"]
    if "_" in field.name:
      names.append(f"--{field.name}")
    default = field.default
    if default is dataclasses.MISSING:
      default = field.default_factory()  # type: ignore[misc]
    # argparse formats help with %: a literal one ("25%") is written %%.
    text = comments.get(field.name, " ").replace("%", "%%")
    kwargs = dict(dest=field.name, default=default, help=text)
    if base is bool:
      parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kwargs)
    elif base in (int, float, str):
      parse = _parse_optional(base) if optional else _parser(base)
      parser.add_argument(*names, type=parse, choices=choices, **kwargs)
    else:
      raise TypeError(f"Config field {field.name!r} has unsupported type {hints[field.name]!r}.")
  return parser


def parse_config(cls: type, argv: Sequence[str] | None = None, description: str | None = None):
  """Parses command-line flags (``sys.argv`` if ``argv`` is None) into an instance of ``cls``."""
  return cls(**vars(config_parser(cls, description).parse_args(argv)))


def warmup_steps(warmup: float, steps: int) -> int:
  """Warmup steps from a ``--warmup`` value: a step count, or a fraction of ``steps`` if below 1
  (``0.1`` of 200 steps is 20)."""
  if not 0 <= warmup <= steps or (warmup >= 1 and warmup != int(warmup)):
    raise ValueError(
      f"warmup must be a fraction of the steps in [0, 1) or a whole number of steps up to"
      f" steps={steps}, got {warmup}."
    )
  return round(warmup * steps) if warmup < 1 else int(warmup)


def learning_rate_schedule(peak: float, steps: int, warmup: int = 0, decay: str = "linear"):
  """Linear warmup from 0 to ``peak`` over ``warmup`` steps, then ``decay`` to 0 at ``steps``.

  ``decay`` is ``"linear"``, ``"cosine"`` or ``"constant"`` (no decay). Returns a float when
  the schedule is constant, so optimizers that want a float get one.
  """
  if decay not in ("linear", "cosine", "constant"):
    raise ValueError(f"decay must be 'linear', 'cosine' or 'constant', got {decay!r}.")
  if not 0 <= warmup <= steps:
    raise ValueError(f"warmup must be between 0 and steps={steps}, got {warmup}.")
  if warmup == 0 and decay == "constant":
    return peak
  rest = steps - warmup
  if decay == "linear":
    after = optax.linear_schedule(peak, 0.0, max(rest, 1))
  elif decay == "cosine":
    after = optax.cosine_decay_schedule(peak, max(rest, 1))
  else:
    after = optax.constant_schedule(peak)
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


class JsonLines:
  """Appends one JSON object per line to ``path`` (no file when ``path`` is empty or None)."""

  def __init__(self, path: str | None):
    self.path = path or None
    if self.path:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      with open(self.path, "w"):
        pass

  def write(self, record: dict[str, Any]) -> None:
    if self.path:
      with open(self.path, "a") as f:
        f.write(json.dumps(record, default=_jsonable) + "\n")


def _jsonable(x):
  try:
    return float(x)
  except (TypeError, ValueError):
    return str(x)


def finite_or_nan(x: float) -> float:
  """``x`` as a float, NaN if it is infinite (JSON and CSV readers agree on NaN only)."""
  x = float(x)
  return x if math.isfinite(x) else math.nan


def prepare_path(path: str | None) -> str | None:
  """``path`` with its directory created, or None for an empty path."""
  if not path:
    return None
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  return path
