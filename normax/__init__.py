"""normax: steepest descent under layerwise operator norms, for JAX and Optax."""

from normax import presets as presets
from normax._adaptive import AdaptiveStepState as AdaptiveStepState
from normax._adaptive import adaptive_step as adaptive_step
from normax._adaptive import muon_free as muon_free
from normax._adaptive import scion_free as scion_free
from normax._attention_logits import attention_with_max_logits as attention_with_max_logits
from normax._attention_logits import max_logits as max_logits
from normax._base import Norm as Norm
from normax._checks import checked_schedule as checked_schedule
from normax._decay import add_cautious_weight_decay as add_cautious_weight_decay
from normax._decay import add_constrained_decay as add_constrained_decay
from normax._dual_norm import scale_by_dual_norm as scale_by_dual_norm
from normax._hyperball import HyperballState as HyperballState
from normax._hyperball import hyperball as hyperball
from normax._init import init_model as init_model
from normax._init import init_params as init_params
from normax._label_table import label_table as label_table
from normax._labels import LabelFn as LabelFn
from normax._labels import label_by_path as label_by_path
from normax._lmo import scale_by_lmo as scale_by_lmo
from normax._matrix_view import MatrixView as MatrixView
from normax._matrix_view import MuonDimensionNumbers as MuonDimensionNumbers
from normax._matrix_view import with_matrix_view as with_matrix_view
from normax._momentum import MomentumState as MomentumState
from normax._momentum import momentum as momentum
from normax._muon import DEFAULT_MUON_RULES as DEFAULT_MUON_RULES
from normax._muon import muon as muon
from normax._newton_schulz import PRECONDITIONINGS as PRECONDITIONINGS
from normax._newton_schulz import newton_schulz as newton_schulz
from normax._newton_schulz import orthogonalize_svd as orthogonalize_svd
from normax._newton_schulz import precondition as precondition
from normax._norms import BiasRMS as BiasRMS
from normax._norms import ColNorm as ColNorm
from normax._norms import Frobenius as Frobenius
from normax._norms import L1ToLp as L1ToLp
from normax._norms import LpToLinf as LpToLinf
from normax._norms import RowNorm as RowNorm
from normax._norms import Sign as Sign
from normax._normuon import ScaleByNeuronRmsState as ScaleByNeuronRmsState
from normax._normuon import scale_by_neuron_rms as scale_by_neuron_rms
from normax._optimizers import normalized_sgd as normalized_sgd
from normax._optimizers import sign_descent as sign_descent
from normax._optimizers import steepest_descent as steepest_descent
from normax._orthogonalizer import Orthogonalizer as Orthogonalizer
from normax._paths import path_to_str as path_to_str
from normax._paths import tree_paths as tree_paths
from normax._projection import project as project
from normax._projection import project_to_norm_ball as project_to_norm_ball
from normax._qk_clip import QKLayer as QKLayer
from normax._qk_clip import qk_clip as qk_clip
from normax._qk_clip import qk_layers as qk_layers
from normax._radius import scale_by_radius as scale_by_radius
from normax._registry import available_norms as available_norms
from normax._registry import get_norm as get_norm
from normax._registry import register_norm as register_norm
from normax._roles import ROLES as ROLES
from normax._roles import Role as Role
from normax._roles import Roles as Roles
from normax._roles import infer_roles as infer_roles
from normax._rules import Rule as Rule
from normax._schedules import CUBIC as CUBIC
from normax._schedules import DION as DION
from normax._schedules import QUINTIC as QUINTIC
from normax._schedules import polar_express_coefficients as polar_express_coefficients
from normax._schedules import schedule_bound as schedule_bound
from normax._scion import scion as scion
from normax._shampoo import ShampooState as ShampooState
from normax._shampoo import scale_by_shampoo as scale_by_shampoo
from normax._soap import SoapState as SoapState
from normax._soap import scale_by_soap as scale_by_soap
from normax._spec import LayerSpec as LayerSpec
from normax._spec import resolve_specs as resolve_specs
from normax._spectral import Spectral as Spectral
from normax._spectral import SpectralConv as SpectralConv

__version__ = "0.1.0"

__all__ = (
  "AdaptiveStepState",
  "BiasRMS",
  "CUBIC",
  "ColNorm",
  "DEFAULT_MUON_RULES",
  "DION",
  "Frobenius",
  "HyperballState",
  "L1ToLp",
  "LabelFn",
  "LayerSpec",
  "LpToLinf",
  "MatrixView",
  "MomentumState",
  "MuonDimensionNumbers",
  "Norm",
  "Orthogonalizer",
  "PRECONDITIONINGS",
  "QKLayer",
  "QUINTIC",
  "ROLES",
  "Role",
  "Roles",
  "RowNorm",
  "Rule",
  "ScaleByNeuronRmsState",
  "ShampooState",
  "Sign",
  "SoapState",
  "Spectral",
  "SpectralConv",
  "adaptive_step",
  "add_cautious_weight_decay",
  "add_constrained_decay",
  "attention_with_max_logits",
  "available_norms",
  "checked_schedule",
  "get_norm",
  "hyperball",
  "infer_roles",
  "init_model",
  "init_params",
  "label_by_path",
  "label_table",
  "max_logits",
  "momentum",
  "muon",
  "muon_free",
  "newton_schulz",
  "normalized_sgd",
  "orthogonalize_svd",
  "path_to_str",
  "polar_express_coefficients",
  "precondition",
  "presets",
  "project",
  "project_to_norm_ball",
  "qk_clip",
  "qk_layers",
  "register_norm",
  "resolve_specs",
  "scale_by_dual_norm",
  "scale_by_lmo",
  "scale_by_neuron_rms",
  "scale_by_radius",
  "scale_by_shampoo",
  "scale_by_soap",
  "schedule_bound",
  "scion",
  "scion_free",
  "sign_descent",
  "steepest_descent",
  "tree_paths",
  "with_matrix_view",
)
