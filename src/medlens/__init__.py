"""medlens: AI on medical images, from raw data to a measured, explained, deployable model.

The public API, loaded lazily (``import medlens`` imports neither torch nor MONAI until a function is used)::

    import medlens
    dataset = medlens.import_dataset("medmnist", "pneumoniamnist.npz", "datasets/pneumonia")
    medlens.plan("datasets/pneumonia")
    medlens.train("datasets/pneumonia", "runs/pneumonia", budget_minutes=10)
    medlens.evaluate("runs/pneumonia", "evals/pneumonia")
    bundle = medlens.load_bundle("runs/pneumonia")
    prediction = bundle.predict("xray.png")            # a typed Prediction; .to_dict() for JSON
    medlens.explain("runs/pneumonia", ["xray.png"], "explanations")   # maps, overlays; the method chosen at training
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from medlens.core.errors import MedlensError

__version__ = "0.2.0"

_LAZY = {
    "plan": "medlens.workflows.planning",
    "train": "medlens.workflows.training",
    "evaluate": "medlens.workflows.evaluation",
    "predict": "medlens.workflows.prediction",
    "export_onnx": "medlens.workflows.exporting",
    "explain": "medlens.workflows.explaining",
    "score_explanations": "medlens.workflows.explaining",
    "load_bundle": "medlens.tasks.base",
    "list_tasks": "medlens.tasks.base",
    "read_image": "medlens.io",
    "write_image": "medlens.io",
    "deidentify": "medlens.deid",
    "create_model": "medlens.models.registry",
    "list_models": "medlens.models.registry",
    "import_dataset": "medlens.data.importers",
    "pretrain": "medlens.workflows.pretraining",
}
__all__ = [
    "MedlensError",
    "__version__",
    "create_model",
    "deidentify",
    "evaluate",
    "explain",
    "export_onnx",
    "import_dataset",
    "list_models",
    "list_tasks",
    "load_bundle",
    "plan",
    "predict",
    "pretrain",
    "read_image",
    "score_explanations",
    "train",
    "write_image",
]

if TYPE_CHECKING:
    from medlens.data.importers import import_dataset
    from medlens.deid import deidentify
    from medlens.io import read_image, write_image
    from medlens.models.registry import create_model, list_models
    from medlens.tasks.base import list_tasks, load_bundle
    from medlens.workflows.evaluation import evaluate
    from medlens.workflows.explaining import explain, score_explanations
    from medlens.workflows.exporting import export_onnx
    from medlens.workflows.planning import plan
    from medlens.workflows.prediction import predict
    from medlens.workflows.training import train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
