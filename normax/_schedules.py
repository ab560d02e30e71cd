"""Newton–Schulz schedules: the step polynomials, their design and their bounds.

Each Newton–Schulz step applies an odd polynomial ``p(x) = a x + b x³ + c x⁵``
to the singular values; a schedule is one ``(a, b, c)`` triple per step. The
named polynomials are constants: :data:`QUINTIC` (the classic Muon quintic,
steep at 0 but not convergent to 1) and :data:`CUBIC` (the textbook iteration,
``p(1) = 1``, slow); :data:`DION` is a per-step schedule.
:func:`polar_express_coefficients` designs a per-step minimax schedule,
:func:`resolve_coefficients` reads any of them as one triple per step, and
:func:`schedule_bound` says how close to 1 a schedule brings the singular
values. The iteration itself is in ``_newton_schulz``.

Examples:
  >>> import normax
  >>> normax.QUINTIC
  (3.4445, -4.775, 2.0315)
  >>> round(sum(normax.QUINTIC), 4)  # p(1): 1 is not a fixed point of the quintic
  0.701
  >>> normax.CUBIC, sum(normax.CUBIC)  # p(1) = 1 and p'(1) = 0
  ((1.5, -0.5, 0.0), 1.0)
  >>> normax.DION[0], len(normax.DION)  # Dion's per-step schedule (optax's "dion")
  ((4.0848, -6.8946, 2.927), 5)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

Coefficients = tuple[tuple[float, float, float], ...]

#: The classic Muon quintic (Jordan et al., 2024), applied at every step.
QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
#: The cubic Newton–Schulz iteration ``1.5 x - 0.5 x³``: slow but converges to 1.
CUBIC: tuple[float, float, float] = (1.5, -0.5, 0.0)
#: The per-step schedule of Dion (Ahn et al., 2025), ``optax.contrib.muon``'s ``"dion"`` preset.
DION: tuple[tuple[float, float, float], ...] = (
  (4.0848, -6.8946, 2.9270),
  (3.9505, -6.3029, 2.6377),
  (3.7418, -5.5913, 2.3037),
  (2.8769, -3.1427, 1.2046),
  (2.8366, -3.0525, 1.2012),
)


def _minimax_quintic(lo: float, hi: float) -> tuple[float, float, float, float]:
  """Odd quintic ``p`` minimizing ``max |1 - p(x)|`` over ``[lo, hi]`` (Remez).

  Returns ``(a, b, c, err)`` with ``p(x) = a x + b x³ + c x⁵``. The error
  equioscillates at ``lo``, two interior points and ``hi``.
  """
  if lo / hi > 1.0 - 1e-4:
    # Interval (numerically) a point: the limit is the degree-5 Newton–Schulz
    # polynomial that is flat to second order at x = hi.
    return 15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5, 0.0
  xs = np.array([lo, lo + (hi - lo) / 4, lo + 3 * (hi - lo) / 4, hi])
  signs = np.array([1.0, -1.0, 1.0, -1.0])
  coef = np.zeros(3)
  err = 0.0
  for _ in range(100):
    # Solve p(x_i) + s_i * err = 1 for (a, b, c, err).
    mat = np.stack([xs, xs**3, xs**5, signs], axis=1)
    a, b, c, err = np.linalg.solve(mat, np.ones(4))
    # Interior extrema of the error: roots of p'(x) = a + 3b x² + 5c x⁴.
    roots = np.roots([5 * c, 3 * b, a])
    roots = np.sort(np.sqrt(roots[(np.abs(roots.imag) < 1e-12) & (roots.real > 0)].real))
    roots = roots[(roots > lo) & (roots < hi)]
    if len(roots) != 2:
      break
    new = np.array([lo, roots[0], roots[1], hi])
    coef = np.array([a, b, c])
    if np.max(np.abs(new - xs)) < 1e-15 * hi:
      break
    xs = new
  a, b, c = coef if coef.any() else (a, b, c)
  return float(a), float(b), float(c), float(abs(err))


def _in(value, name: str, low: float, high: float, what: str, *, integer=False) -> float:
  """``float(value)`` if it lies in ``[low, high)`` (an integer if asked), else a ``ValueError``.

  (The schedules sit below ``normax._checks`` in the module layers, so they check here.)
  """
  try:
    v = float(value)
  except (TypeError, ValueError):
    v = math.nan
  if not (low <= v < high) or (integer and not v.is_integer()):
    raise ValueError(f"{name} must be {what}, got {value!r}.")
  return v


def polar_express_coefficients(
  steps: int = 8,
  lower: float = 1e-3,
  safety: float = 1.01,
  cushion: float = 0.02407327424182761,
) -> Coefficients:
  """A per-step quintic schedule in the style of Polar Express.

  At step ``t`` the singular values of the iterate are known to lie in
  ``[l_t, u_t]``; the step applies the odd quintic ``p_t`` that best
  approximates the constant 1 on that interval in the minimax sense, so the
  next interval is ``[p_t(l_t), p_t(u_t)]`` (Amsel et al., 2025, Alg. 1). The
  schedule is computed here, in float64, from the four numbers below.

  Args:
    steps: Number of steps in the schedule.
    lower: ``l_0``, the smallest singular value (relative to the Frobenius
      pre-normalization) that the schedule is designed to bring to 1.
    safety: Each polynomial is evaluated at ``x / safety`` (except the last),
      so singular values slightly above ``u_t`` through rounding, which bfloat16
      makes likely, are not blown up.
    cushion: The interval fitted at each step is ``[max(l_t, cushion·u_t),
      u_t]``: a flatter polynomial that is numerically stabler and loses little.
      The default is the value used by Polar Express; with it, steps 5 to 7
      of this schedule agree with the published ones to 1e-12.

  Returns:
    A tuple of ``(a, b, c)`` triples, one per step.

  Examples:
    >>> import normax
    >>> coeffs = normax.polar_express_coefficients(8)
    >>> len(coeffs), len(coeffs[0])
    (8, 3)
    >>> lo, hi = normax.schedule_bound(coeffs, steps=8, lower=1e-3)
    >>> round(lo, 4), round(hi, 4)  # every σ ≥ 1e-3·‖G‖_F ends at 1
    (1.0, 1.0)

  References:
    Amsel, Persson, Musco and Gower, *The Polar Express: Optimal Matrix Sign
    Methods and Their Application to the Muon Algorithm*, 2025.
  """
  owner = "normax.polar_express_coefficients"
  steps = int(_in(steps, f"{owner} steps", 1, math.inf, "an integer >= 1", integer=True))
  lower = _in(lower, f"{owner} lower", 0, 1, "a number in (0, 1)")
  if lower == 0:
    raise ValueError(f"{owner} lower must be a number in (0, 1), got {lower!r}.")
  safety = _in(safety, f"{owner} safety", 1, math.inf, "a finite number >= 1")
  cushion = _in(cushion, f"{owner} cushion", 0, 1, "a number in [0, 1)")
  return _polar_express(steps, lower, safety, cushion)


@functools.cache
def _polar_express(steps: int, lower: float, safety: float, cushion: float) -> Coefficients:
  lo, hi = lower, 1.0
  out = []
  for t in range(steps):
    a, b, c, _ = _minimax_quintic(max(lo, cushion * hi), hi)
    p = lambda x, a=a, b=b, c=c: a * x + b * x**3 + c * x**5  # noqa: E731
    # The true image of [lo, hi] under p: endpoints and interior extrema.
    grid = np.concatenate([np.geomspace(lo, hi, 2001), [lo, hi]])
    vals = p(grid)
    lo, hi = float(vals.min()), float(vals.max())
    if t < steps - 1 and safety != 1.0:
      a, b, c = a / safety, b / safety**3, c / safety**5
      lo, hi = lo / safety, hi / safety
    out.append((a, b, c))
  return tuple(out)


_NAMED_SCHEDULES = ("quintic", "standard", "polar_express", "dion", "cubic")


def freeze_coefficients(coefficients: str | Sequence[float] | Sequence[Sequence[float]]):
  """The one reading of a schedule argument: a known name, one triple, or a sequence of them.

  Returns the name itself, one ``(a, b, c)`` triple of floats, or a tuple of triples (so
  equal schedules give equal, hashable values); anything else is a ``ValueError``.

  Examples:
    >>> from normax._schedules import freeze_coefficients
    >>> freeze_coefficients([1.5, -0.5, 0])
    (1.5, -0.5, 0.0)
    >>> freeze_coefficients([[3, -3, 1], (1.5, -0.5, 0)])
    ((3.0, -3.0, 1.0), (1.5, -0.5, 0.0))
  """
  if isinstance(coefficients, str):
    if coefficients not in _NAMED_SCHEDULES:
      raise ValueError(
        f"Unknown Newton–Schulz schedule {coefficients!r}; expected one of"
        f" {_NAMED_SCHEDULES} or a sequence of (a, b, c) triples."
      )
    return coefficients
  try:
    arr = np.asarray(coefficients, dtype=np.float64)
  except (TypeError, ValueError):
    arr = np.zeros((0,))
  if arr.ndim not in (1, 2) or arr.shape[-1] != 3 or arr.size == 0:
    raise ValueError(
      "Newton–Schulz coefficients must be a schedule name, one (a, b, c) triple or a"
      f" sequence of them; got {coefficients!r} (shape {arr.shape})."
    )
  if arr.ndim == 1:
    return tuple(float(v) for v in arr)
  return tuple(tuple(float(v) for v in row) for row in arr)


def per_step(coefficients) -> bool:
  """Whether a schedule gives its own triple to each step (``"dion"``, a sequence of triples)."""
  frozen = freeze_coefficients(coefficients)
  return frozen == "dion" or (not isinstance(frozen, str) and isinstance(frozen[0], tuple))


def optax_schedule(ns_coeffs, ns_steps) -> tuple[str | tuple, int]:
  """``optax.contrib.muon``'s reading of ``(ns_coeffs, ns_steps)``: ``(coefficients, steps)``.

  A per-step schedule (a sequence of triples, or ``"dion"``) runs its rows once each,
  ``ns_steps`` only bounding their number; a triple or another name runs ``ns_steps`` times.
  ``ns_steps`` may be a traced integer (``optax.inject_hyperparams``), not a per-step one.
  """
  frozen = freeze_coefficients(ns_coeffs)
  if not per_step(frozen):
    return frozen, ns_steps
  rows = DION if frozen == "dion" else frozen
  if isinstance(ns_steps, int | np.integer) and len(rows) > ns_steps:
    raise ValueError(
      f"{len(rows)} Newton–Schulz coefficient rows were given for ns_steps={ns_steps};"
      f" pass ns_steps >= {len(rows)} (each row runs once, as in optax.contrib.muon)."
    )
  return rows, len(rows)


def resolve_coefficients(
  coefficients: str | Sequence[float] | Sequence[Sequence[float]], steps: int | None
) -> Coefficients:
  """Turns a schedule name or user coefficients into one triple per step.

  Args:
    coefficients: ``"quintic"`` (classic Muon; ``"standard"`` is the same,
      under ``optax.contrib.muon``'s name), ``"polar_express"``, ``"dion"``
      (:data:`DION`, five steps), ``"cubic"``, one ``(a, b, c)`` triple used
      at every step, or a sequence of triples. A sequence shorter than
      ``steps`` repeats its last triple; a longer one is an error.
    steps: Number of iterations; ``None`` when it is not known (traced): the
      rows that do not depend on it, the last one repeating.

  Returns:
    ``steps`` triples ``(a, b, c)`` (with ``steps=None``, the schedule's own rows).
  """
  frozen = freeze_coefficients(coefficients)
  if steps is None:
    if frozen == "polar_express":
      raise TypeError(
        "The 'polar_express' schedule depends on the number of steps, which is traced here"
        " (an injected hyperparameter?). Make steps static, e.g."
        " optax.inject_hyperparams(normax.muon, static_args=('ns_steps',))."
      )
    rows = {"quintic": (QUINTIC,), "standard": (QUINTIC,), "dion": DION, "cubic": (CUBIC,)}
    if isinstance(frozen, str):
      return rows[frozen]
    return (frozen,) if not isinstance(frozen[0], tuple) else frozen
  steps = int(_in(steps, "Newton–Schulz steps", 0, math.inf, "an integer >= 0", integer=True))
  if frozen in ("quintic", "standard"):
    return (QUINTIC,) * steps
  if frozen == "dion":
    return resolve_coefficients(DION, steps)
  if frozen == "cubic":
    return (CUBIC,) * steps
  if frozen == "polar_express":
    return polar_express_coefficients(max(steps, 1))[:steps]
  rows = (frozen,) if not isinstance(frozen[0], tuple) else frozen
  if len(rows) > steps and len(rows) > 1:
    raise ValueError(
      f"{len(rows)} coefficient triples were given for {steps} steps; pass steps=len(coefficients)."
    )
  return tuple(rows[min(i, len(rows) - 1)] for i in range(steps))  # type: ignore[return-value]


def schedule_bound(
  coefficients: str | Sequence = "quintic", steps: int = 5, lower: float = 1e-3
) -> tuple[float, float]:
  """Range of the composed scalar map on singular values in ``[lower, 1]``.

  The singular values of ``newton_schulz(G) `` are ``p(σ/‖G‖_F)``; this
  returns ``(min p, max p)`` over ``[lower, 1]`` (float64, dense grid), i.e.
  how close to orthogonal the schedule gets for matrices whose normalized
  singular values are at least ``lower``.

  Examples:
    >>> import normax
    >>> [round(v, 4) for v in normax.schedule_bound("quintic", 5, lower=1e-2)]
    [0.6818, 1.1344]
    >>> [round(v, 4) for v in normax.schedule_bound("cubic", 5, lower=1e-2)]
    [0.0758, 1.0]
  """
  lower = _in(lower, "normax.schedule_bound lower", 0, 1 + 1e-12, "a number in (0, 1]")
  if lower == 0:
    raise ValueError(f"normax.schedule_bound lower must be a number in (0, 1], got {lower!r}.")
  xs = np.geomspace(lower, 1.0, 20001)
  for a, b, c in resolve_coefficients(coefficients, steps):
    xs = a * xs + b * xs**3 + c * xs**5
  return float(xs.min()), float(xs.max())


def schedule_peak(coefficients: str | Sequence = "quintic", steps: int = 5) -> float:
  """The largest ``|p(x)|`` of the composed step polynomials over all of ``x ∈ [0, 1]``.

  Every singular value of ``newton_schulz(G)`` is ``|p(σ/‖G‖_F)|`` with ``σ/‖G‖_F ∈ [0, 1]``,
  so this bounds them all (the quintic's 1.2024 is reached by the values near 1e-3, which
  ``schedule_bound`` with a larger ``lower`` leaves out).
  """
  return _peak(resolve_coefficients(coefficients, steps))


@functools.cache
def _peak(schedule: Coefficients) -> float:
  if not schedule:
    return 1.0
  lo, hi = schedule_bound(schedule, len(schedule), lower=1e-12)
  return max(hi, -lo)


__all__ = [
  "CUBIC",
  "DION",
  "QUINTIC",
  "Coefficients",
  "freeze_coefficients",
  "optax_schedule",
  "per_step",
  "polar_express_coefficients",
  "resolve_coefficients",
  "schedule_bound",
  "schedule_peak",
]
