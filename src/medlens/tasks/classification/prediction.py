"""A classifier's answer for one image: probability per class and the label at the operating threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.image import Image
from medlens.core.prediction import Prediction

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


@dataclass(kw_only=True)
class ClassificationPrediction(Prediction):
    """Probabilities per class (the ensemble mean) and the predicted label.

    Attributes:
        probabilities: class name to probability (softmax; per label sigmoid for multi-label).
        label: the predicted class (binary: at the operating threshold; multiclass: arg-max), or the list of
            labels at or above the threshold for multi-label.
        threshold: the operating threshold used (None for arg-max).
        member_probabilities: each member's probabilities, (members, classes), for spread and uncertainty.
    """

    task = "classification"
    probabilities: dict[str, float]
    label: str | list[str]
    threshold: float | None = None
    member_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def fields(self) -> dict[str, Any]:
        return {"probabilities": self.probabilities, "label": self.label, "threshold": self.threshold}

    def table_row(self) -> dict[str, Any]:
        label = ";".join(self.label) if isinstance(self.label, list) else self.label
        return {"input": self.source, "prediction": label, **{f"p_{k}": v for k, v in self.probabilities.items()}}


def metric_task(class_names: Sequence[str], multilabel: bool) -> str:
    """The metrics' name for a classifier: binary, multiclass or multilabel."""
    if multilabel:
        return "multilabel"
    return "binary" if len(class_names) == 2 else "multiclass"


@torch.inference_mode()
def member_probabilities(bundle: Bundle, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Each member's probabilities (M, N, K) for prepared, not yet normalised inputs (N, C, *size)."""
    from medlens.tasks.classification.module import probabilities
    from medlens.training.images import normalize

    multilabel = bundle.plan.task == "multilabel"
    out = []
    for net in bundle.networks():
        chunks = [
            probabilities(net(normalize(x[i : i + batch_size], bundle.plan.data)).float(), multilabel)
            for i in range(0, len(x), batch_size)
        ]
        out.append(torch.cat(chunks).numpy())
    return np.stack(out)


def predictions_from_probabilities(
    bundle: Bundle, per_member: np.ndarray, sources: Sequence[str], flags: Sequence[list[str]]
) -> list[ClassificationPrediction]:
    """Turn members' probabilities (M, N, K) into one prediction per input."""
    from medlens.tasks.classification.metrics import predict_labels

    names = bundle.class_names
    multilabel = bundle.plan.task == "multilabel"
    task = metric_task(names, multilabel)
    prob = per_member.mean(axis=0)  # (N, K)
    threshold = bundle.threshold if (task == "binary" and bundle.threshold is not None) else 0.5
    labels = predict_labels(prob[:, 1] if task == "binary" else prob, task, threshold)
    out = []
    for i, (source, p, label) in enumerate(zip(sources, prob, labels, strict=True)):
        chosen: str | list[str] = (
            [names[j] for j, flag in enumerate(np.atleast_1d(label)) if flag] if multilabel else names[int(label)]
        )
        out.append(
            ClassificationPrediction(
                model=bundle.name,
                source=source,
                flags=list(flags[i]),
                probabilities={n: round(float(v), 6) for n, v in zip(names, p, strict=True)},
                label=chosen,
                threshold=None if task == "multiclass" else threshold,
                member_probabilities=per_member[:, i],
            )
        )
    return out


def predict_images(bundle: Bundle, images: Sequence[Image]) -> list[ClassificationPrediction]:
    """Classify images given in their own geometry (resized and normalised as the plan says)."""
    from medlens.training.images import to_input

    arrays = [to_input(image, bundle.plan.data) for image in images]
    per_member = member_probabilities(bundle, torch.from_numpy(np.stack(arrays)))
    sources = [str(image.meta.get("source", "<memory>")) for image in images]
    flags = [list(image.meta.get("flags", [])) for image in images]
    return predictions_from_probabilities(bundle, per_member, sources, flags)
