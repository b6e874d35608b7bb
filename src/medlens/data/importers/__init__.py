"""Importers turn data as it arrives (MedMNIST archives, class folders, CSV tables, ...) into a dataset.

Each importer registers itself by name (STYLE.md item 1); ``medlens import NAME`` looks it up here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medlens.core.errors import ConfigError

_IMPORTERS: dict[str, Callable[..., Any]] = {}


def register_importer(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make ``fn`` available as importer ``name``."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        _IMPORTERS[name] = fn
        return fn

    return add


def get_importer(name: str) -> Callable[..., Any]:
    _load_builtin()
    if name not in _IMPORTERS:
        raise ConfigError("importer", f"unknown importer {name!r} (known: {', '.join(sorted(_IMPORTERS))})")
    return _IMPORTERS[name]


def list_importers() -> list[str]:
    _load_builtin()
    return sorted(_IMPORTERS)


def _load_builtin() -> None:
    from medlens.data.importers import (  # noqa: F401  (registration side effect)
        coco,
        dicomweb,
        folder,
        medmnist,
        msd,
        pairs,
        table,
        visits,
        voc,
        yolo,
    )


def import_dataset(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run importer ``name`` (``medmnist``, ``folder``, ``csv``, ``msd``, ``pairs``, ``voc``, ``coco``, ``yolo``,
    ``dicomweb``...).

    Example:
        >>> import medlens
        >>> medlens.import_dataset("medmnist", "pneumoniamnist.npz", "datasets/pneumonia")  # doctest: +SKIP
    """
    return get_importer(name)(*args, **kwargs)
