"""String names for norms: ``"spectral"`` wherever ``normax.Spectral()`` goes."""

from __future__ import annotations

import functools
from collections.abc import Callable

from normax._base import Norm
from normax._norms import BiasRMS, ColNorm, Frobenius, L1ToLp, LpToLinf, RowNorm, Sign
from normax._spectral import Spectral, SpectralConv

_REGISTRY: dict[str, Callable[..., Norm]] = {
  "spectral": Spectral,
  "spectral_conv": SpectralConv,
  "sign": Sign,
  "sign_unnormalized": functools.partial(Sign, normalized=False),
  "colnorm": ColNorm,
  "rownorm": RowNorm,
  "bias_rms": BiasRMS,
  "frobenius": Frobenius,
  "l1_to_lp": L1ToLp,
  "lp_to_linf": LpToLinf,
}


def register_norm(name: str, factory: Callable[..., Norm], *, overwrite: bool = False) -> None:
  """Makes ``get_norm(name, **kwargs)`` return ``factory(**kwargs)``.

  Args:
    name: The string users write in place of the norm.
    factory: A ``Norm`` subclass or any callable returning a ``Norm``.
    overwrite: Replace an existing name instead of raising.

  Examples:
    >>> import functools, normax
    >>> svd = functools.partial(normax.Spectral, method="svd")
    >>> normax.register_norm("spectral_svd", svd, overwrite=True)
    >>> normax.get_norm("spectral_svd").method
    'svd'
    >>> normax.register_norm("spectral_svd", normax.Spectral)
    Traceback (most recent call last):
    ...
    ValueError: A norm named 'spectral_svd' is already registered; pass overwrite=True.
  """
  if name in _REGISTRY and not overwrite:
    raise ValueError(f"A norm named {name!r} is already registered; pass overwrite=True.")
  _REGISTRY[name] = factory


def available_norms() -> tuple[str, ...]:
  """Names accepted by :func:`get_norm`, sorted.

  Examples:
    >>> import normax
    >>> "spectral" in normax.available_norms()
    True
  """
  return tuple(sorted(_REGISTRY))


def get_norm(norm: str | Norm, **kwargs) -> Norm:
  """Resolves a norm given by name (with options) or returns a ``Norm`` as is.

  Examples:
    >>> import normax
    >>> normax.get_norm("spectral", steps=6).steps
    6
    >>> normax.get_norm("sign_unnormalized").normalized
    False
  """
  if isinstance(norm, Norm):
    if kwargs:
      raise TypeError(f"Options {sorted(kwargs)} were given with a Norm instance {norm!r}.")
    return norm
  if isinstance(norm, str):
    try:
      factory = _REGISTRY[norm]
    except KeyError:
      raise ValueError(
        f"Unknown norm {norm!r}. Known names: {', '.join(available_norms())};"
        " or pass a normax.Norm instance."
      ) from None
    return factory(**kwargs)
  raise TypeError(f"Expected a norm name or a normax.Norm, got {type(norm).__name__}: {norm!r}.")
