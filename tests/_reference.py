"""Float64 numpy references shared by the tests.

The Newton–Schulz iteration written from its definition, in float64 and on the matrix as given
(no short-side trick, no Gram form), so that every fast path of ``normax.newton_schulz`` and
``normax.Spectral`` is compared against the same plain iteration.
"""

import numpy as np

from normax._schedules import resolve_coefficients


def newton_schulz(g, coefficients="quintic", steps=5):
  """``X ← aX + (bA + cA²)X`` with ``A = XXᵀ``, from ``X = G/‖G‖_F``; per matrix, float64.

  Leading axes of ``g`` are a batch; a zero matrix stays zero.
  """
  x = np.asarray(g, np.float64)
  fro = np.linalg.norm(x, axis=(-2, -1), keepdims=True)
  x = x / np.where(fro == 0, 1.0, fro)
  for a, b, c in resolve_coefficients(coefficients, steps):
    gram = x @ np.swapaxes(x, -1, -2)
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x


def scalar_map(coefficients, steps, s):
  """The composed step polynomial ``p_T ∘ … ∘ p_1`` on (normalized) singular values."""
  s = np.asarray(s, np.float64)
  for a, b, c in resolve_coefficients(coefficients, steps):
    s = a * s + b * s**3 + c * s**5
  return s
