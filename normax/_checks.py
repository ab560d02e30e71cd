"""Argument checks: the range of every numeric argument, checked where an object is built.

Every public constructor passes its numbers to :func:`check_args` with the :class:`Range` each
must lie in, so a negative learning rate, a NaN ``eps`` or a momentum ``β = 1`` is an error
naming the argument before anything runs, whether it is a Python number, a NumPy scalar or a
concrete JAX scalar. Values only known inside ``jax.jit`` (traced, e.g. under
``optax.inject_hyperparams``) and schedules are not checked there; :func:`checked_schedule`
wraps a schedule with a check that runs at every step, under ``jit`` too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Range:
  """An interval of allowed values: ``[low, high)`` by default, optionally integers only.

  NaN is never in a range; ``inf`` only in one whose ``high`` is ``inf`` and closed.
  """

  low: float = 0.0
  high: float = math.inf
  low_open: bool = False
  high_open: bool = True
  integer: bool = False

  def __contains__(self, v: float) -> bool:
    if math.isnan(v) or (self.integer and not float(v).is_integer()):
      return False
    above = v > self.low if self.low_open else v >= self.low
    below = v < self.high if self.high_open else v <= self.high
    return above and below

  def describe(self) -> str:
    if self.high == math.inf and self.high_open:
      what = "an integer" if self.integer else "a finite number"
      return f"{what} {'>' if self.low_open else '>='} {_num(self.low)}"
    left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
    what = "an integer" if self.integer else "a number"
    return f"{what} in {left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(x: float) -> str:
  return "inf" if x == math.inf else f"{x:g}"


#: ``[0, ∞)``: learning rates, radii, decays, ``eps``.
NONNEGATIVE = Range()
#: ``(0, ∞)``: sharpness, a sphere's radius, exponents.
POSITIVE = Range(low_open=True)
#: ``[0, 1)``: moving-average factors (momentum ``β``, Adam's ``b1``/``b2``).
UNIT = Range(0.0, 1.0)
#: ``(0, 1)``.
OPEN_UNIT = Range(0.0, 1.0, low_open=True)
#: ``[1, ∞]``: the exponent ``p`` of an ℓp norm.
EXPONENT = Range(1.0, math.inf, high_open=False)
#: ``[1, ∞)``.
AT_LEAST_ONE = Range(1.0)
#: Integers ``≥ 0`` (Newton–Schulz steps) and ``≥ 1`` (block sizes, intervals).
COUNT = Range(integer=True)
POSITIVE_COUNT = Range(1.0, integer=True)


def _is_number(x: Any) -> bool:
  if isinstance(x, bool | np.bool_):
    return False
  if isinstance(x, int | float | np.integer | np.floating):
    return True
  if isinstance(x, jax.Array | np.ndarray):
    return x.ndim == 0 and (
      jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
    )
  return False


def _is_leaf(x: Any) -> bool:
  return _is_number(x) or callable(x) or isinstance(x, jax.Array | np.ndarray)


def check_value(value: Any, what: str, allowed: Range = NONNEGATIVE) -> None:
  """Raises a ``ValueError`` naming ``what`` if a number in ``value`` is outside ``allowed``.

  ``value`` is an argument as the transforms take it: a number (Python, NumPy or a concrete
  JAX scalar), ``None``, a schedule, or a pytree of these (per-leaf radii); each number is
  checked, the rest is left to the transform. Traced values (inside ``jit``) are skipped.
  """
  flat = jax.tree_util.tree_flatten_with_path(value, is_leaf=_is_leaf)[0]
  for keys, x in flat:
    if isinstance(x, jax.core.Tracer) or not _is_number(x):
      continue
    if float(np.asarray(x)) not in allowed:
      where = f" at {jax.tree_util.keystr(keys, simple=True, separator='/')!r}" if keys else ""
      raise ValueError(f"{what}{where} must be {allowed.describe()}, got {x!r}.")


def check_args(owner: str, **args: tuple[Any, Range]) -> None:
  """Checks each ``name=(value, range)`` with :func:`check_value`; errors read
  ``"<owner> <name> must be ..."``. The one place public constructors check their numbers.

  Examples:
    >>> from normax._checks import UNIT, check_args
    >>> check_args("normax.momentum", beta=(0.9, UNIT))
    >>> check_args("normax.momentum", beta=(1.0, UNIT))
    Traceback (most recent call last):
    ...
    ValueError: normax.momentum beta must be a number in [0, 1), got 1.0.
  """
  for name, (value, allowed) in args.items():
    check_value(value, f"{owner} {name}", allowed)


F = TypeVar("F", bound=Callable[..., Any])


def renamed(owner: str, **old: str) -> Callable[[F], F]:
  """Refuses each former keyword name of a function with a ``TypeError`` naming its spelling now.

  normax is 0.x: a renamed argument is not kept as an alias. ``old`` maps each former name
  to the code to write instead (``momentum_dtype="mu_dtype="``); the decorated function keeps
  its signature, and lists the former names in its ``renamed`` attribute.

  Examples:
    >>> from normax._checks import renamed
    >>> @renamed("f", dtype="mu_dtype=")
    ... def f(mu_dtype=None):
    ...   return mu_dtype
    >>> f(dtype="bfloat16")
    Traceback (most recent call last):
    ...
    TypeError: f() got dtype=, a former name: pass mu_dtype= instead.
  """

  def decorate(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      gone = [name for name in kwargs if name in old]
      if gone:
        fixes = "; ".join(f"{name}=, a former name: pass {old[name]} instead" for name in gone)
        raise TypeError(f"{owner}() got {fixes}.")
      return fn(*args, **kwargs)

    wrapper.renamed = dict(old)
    return wrapper  # type: ignore[return-value]

  return decorate


def checked_schedule(
  schedule: Callable[[jax.Array], Any],
  name: str = "schedule",
  low: float = 0.0,
  high: float = math.inf,
  *,
  high_open: bool = False,
) -> Callable[[jax.Array], Any]:
  """A schedule that raises an error when it returns a value outside ``[low, high]``.

  Numbers given to normax are checked when the optimizer is built; a schedule's values exist
  only at each step, inside ``jax.jit``. Wrap a learning-rate, radius, decay or momentum
  schedule in this to check them there: each value (and its step count, in the message) goes
  to the host through ``jax.debug.callback``, which raises inside ``jit`` and ``lax.scan``
  (a ``JaxRuntimeError`` whose text holds the ``ValueError``); outside ``jit`` the
  ``ValueError`` itself. NaN and ``±inf`` are always errors. One host callback per step and
  schedule: for debugging runs, or cheap enough where the step is large.

  Args:
    schedule: An ``optax.Schedule`` (step count -> value).
    name: Named in the error.
    low: Smallest allowed value.
    high: Largest allowed value (``math.inf``: no upper bound, only finite).
    high_open: Exclude ``high`` itself, e.g. ``high=1, high_open=True`` for a momentum ``β``.

  Returns:
    A schedule with the same values.

  Examples:
    >>> import jax, jax.numpy as jnp, normax
    >>> lr = normax.checked_schedule(lambda t: 0.5 - 0.25 * t, "learning_rate")
    >>> float(lr(jnp.asarray(1)))
    0.25
    >>> lr(jnp.asarray(4))
    Traceback (most recent call last):
    ...
    ValueError: learning_rate schedule returned -0.5 at step 4; expected a finite number >= 0.

    Under ``jit`` the same check runs at every step, through a host callback.
  """
  if not (math.isfinite(low) and high > low):
    raise ValueError(
      f"normax.checked_schedule needs a finite low below high, got low={low!r}, high={high!r}."
    )
  allowed = Range(low, high, high_open=high_open or high == math.inf)

  def fail(value, count):
    for x in np.ravel(np.asarray(value, np.float64)):
      if float(x) not in allowed:
        raise ValueError(
          f"{name} schedule returned {float(x)!r} at step {int(np.asarray(count))};"
          f" expected {allowed.describe()}."
        )

  def wrapped(count):
    value = schedule(count)
    if isinstance(value, jax.core.Tracer) or isinstance(count, jax.core.Tracer):
      jax.debug.callback(fail, value, count)
    else:
      fail(value, count)
    return value

  return wrapped


__all__ = [
  "AT_LEAST_ONE",
  "COUNT",
  "EXPONENT",
  "NONNEGATIVE",
  "OPEN_UNIT",
  "POSITIVE",
  "POSITIVE_COUNT",
  "Range",
  "UNIT",
  "check_args",
  "check_value",
  "checked_schedule",
  "renamed",
]
