"""normax: steepest descent under layerwise operator norms, for JAX and Optax."""

from normax._base import Norm as Norm
from normax._newton_schulz import CUBIC as CUBIC
from normax._newton_schulz import QUINTIC as QUINTIC
from normax._newton_schulz import newton_schulz as newton_schulz
from normax._newton_schulz import orthogonalize_svd as orthogonalize_svd
from normax._newton_schulz import polar_express_coefficients as polar_express_coefficients
from normax._newton_schulz import schedule_bound as schedule_bound
from normax._norms import BiasRMS as BiasRMS
from normax._norms import ColNorm as ColNorm
from normax._norms import Frobenius as Frobenius
from normax._norms import L1ToLp as L1ToLp
from normax._norms import LpToLinf as LpToLinf
from normax._norms import RowNorm as RowNorm
from normax._norms import Sign as Sign
from normax._paths import path_to_str as path_to_str
from normax._paths import tree_paths as tree_paths
from normax._registry import available_norms as available_norms
from normax._registry import get_norm as get_norm
from normax._registry import register_norm as register_norm
from normax._spec import LayerSpec as LayerSpec
from normax._spectral import Spectral as Spectral
from normax._spectral import SpectralConv as SpectralConv

__version__ = "0.1.0"

__all__ = (
  "BiasRMS",
  "CUBIC",
  "ColNorm",
  "Frobenius",
  "L1ToLp",
  "LpToLinf",
  "Norm",
  "QUINTIC",
  "RowNorm",
  "Sign",
  "Spectral",
  "SpectralConv",
  "available_norms",
  "get_norm",
  "newton_schulz",
  "orthogonalize_svd",
  "polar_express_coefficients",
  "register_norm",
  "schedule_bound",
)
