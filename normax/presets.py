"""Ready-made ``(labels, specs)`` for the layer roles of the Scion paper, one per model family.

``labels, specs = normax.presets.scion_gpt(); tx = normax.scion(2**-6, specs, labels)``.
Each preset's docstring gives its radii, their source and the measurement behind them.
"""

from normax._presets import BIAS_PATTERNS as BIAS_PATTERNS
from normax._presets import HEAD_PATTERNS as HEAD_PATTERNS
from normax._presets import INPUT_PATTERNS as INPUT_PATTERNS
from normax._presets import TOKEN_PATTERNS as TOKEN_PATTERNS
from normax._presets import scion_cnn as scion_cnn
from normax._presets import scion_gpt as scion_gpt
from normax._presets import scion_gpt_tied as scion_gpt_tied
from normax._presets import scion_mlp as scion_mlp

__all__ = (
  "BIAS_PATTERNS",
  "HEAD_PATTERNS",
  "INPUT_PATTERNS",
  "TOKEN_PATTERNS",
  "scion_cnn",
  "scion_gpt",
  "scion_gpt_tied",
  "scion_mlp",
)
