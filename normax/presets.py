"""Ready-made ``(labels, specs)`` for the layer roles of the Scion paper.

``labels, specs = normax.presets.scion_image(); tx = normax.scion(2**-4, specs, labels)``.
See :mod:`normax._presets` for the radii and their sources.
"""

from normax._presets import BIAS_PATTERNS as BIAS_PATTERNS
from normax._presets import HEAD_PATTERNS as HEAD_PATTERNS
from normax._presets import scion_gpt as scion_gpt
from normax._presets import scion_image as scion_image

__all__ = ("BIAS_PATTERNS", "HEAD_PATTERNS", "scion_gpt", "scion_image")
