"""The explanation methods by name (STYLE.md item 1): a decorator fills the registry, :func:`get_method` looks a
name up.

A method takes an :class:`~medlens.explanations.explainer.Explainer` and returns a map on the network input's
spatial grid (higher: more in favour of the target). The CAM family comes from pytorch-grad-cam (:mod:`.cam`),
occlusion and integrated gradients from captum (:mod:`.attribution`). Each task says which methods it supports
(``Task.explain_methods``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medlens.core.errors import ConfigError
from medlens.explanations.explainer import Explainer

MethodFn = Callable[[Explainer], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: the registry name (``--method``).
        compute: the explainer -> a map on the network input's spatial grid.
        family: ``cam`` (reads a feature layer), ``perturbation`` or ``gradient`` (read the input).
        slow: needs a forward pass per channel or per occluded patch; skipped when a bundle's default is chosen
            at training.
        description: one line for ``--help`` and the documentation.
    """

    name: str
    compute: MethodFn
    family: str
    slow: bool
    description: str


_METHODS: dict[str, Method] = {}


def register_method(
    name: str, *, family: str, slow: bool = False, description: str = ""
) -> Callable[[MethodFn], MethodFn]:
    """Decorator: register ``compute(explainer) -> map`` under ``name``."""

    def add(compute: MethodFn) -> MethodFn:
        _METHODS[name] = Method(name, compute, family, slow, description or (compute.__doc__ or "").strip())
        return compute

    return add


def _load_builtin() -> None:
    from medlens.explanations import attribution, cam  # noqa: F401  (registration side effect)


def get_method(name: str) -> Method:
    """The method registered as ``name``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    _load_builtin()
    if name not in _METHODS:
        raise ConfigError("--method", f"unknown explanation method {name!r} (known: {', '.join(list_methods())})")
    return _METHODS[name]


def list_methods() -> list[str]:
    """Every registered method name: the CAM family first, then perturbation, then gradient methods (each family in
    registration order)."""
    _load_builtin()
    families = {"cam": 0, "perturbation": 1, "gradient": 2}
    return sorted(_METHODS, key=lambda name: families.get(_METHODS[name].family, len(families)))


def compute_map(method: str, explainer: Explainer) -> np.ndarray:
    """Run ``method`` on ``explainer``: a finite float32 map of the network input's spatial shape."""
    raw = np.asarray(get_method(method).compute(explainer), dtype=np.float32)
    if raw.shape != explainer.spatial_shape:
        raise ValueError(f"{method} gave a map of shape {raw.shape}, expected {explainer.spatial_shape}")
    return np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
