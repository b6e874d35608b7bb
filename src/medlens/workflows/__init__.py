"""The public API: short task-agnostic functions over the layers below (the CLI and the service call these).

``from medlens.workflows import train`` gives the function (modules are named for what they do:
``training``, ``evaluation``, ``prediction``, ``exporting``, ``planning``); nothing is imported until used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_FUNCTIONS = {
    "plan": "medlens.workflows.planning",
    "train": "medlens.workflows.training",
    "evaluate": "medlens.workflows.evaluation",
    "predict": "medlens.workflows.prediction",
    "export_onnx": "medlens.workflows.exporting",
}
__all__ = list(_FUNCTIONS)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
