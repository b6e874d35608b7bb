"""Planning rules for classification and multi-label classification, 2D and 3D: the whole-image rules
(:mod:`medlens.training.image_planning`), the loss and class weights."""

from __future__ import annotations

from typing import Any

from medlens.tasks.classification.config import ClassificationOptions, ClassificationPlan
from medlens.training.image_planning import cost_counter, plan_image_model


def plan_classification(fingerprint: dict[str, Any], *, has_gpu: bool = False, cost: Any = None) -> ClassificationPlan:
    """Derive a classification plan from a fingerprint (see ``medlens.data.fingerprint``).

    Args:
        fingerprint: what the data is (with the classification part: ``class_counts``).
        has_gpu: a GPU trains the plan (no time budget is set then).
        cost: training GFLOPs of a candidate network (see :func:`~medlens.training.image_planning.cost_counter`);
            None on GPU.
    """
    multilabel = fingerprint["task"] == "multilabel"
    sections = plan_image_model(fingerprint, has_gpu=has_gpu, cost=cost, monitor="val_auc", monitor_mode="max")
    notes = sections.notes
    counts = fingerprint["class_counts"]["train"]
    class_weights = None
    if not multilabel and min(counts) > 0 and max(counts) / min(counts) > 1.5:
        total = sum(counts)
        class_weights = [round(total / (len(counts) * c), 4) for c in counts]
        notes.append(f"class weights {class_weights}: training classes are imbalanced {counts}")
    notes.append(
        "loss: binary cross-entropy per label" if multilabel else "loss: cross-entropy with label smoothing 0.05"
    )
    return ClassificationPlan(
        task="multilabel" if multilabel else "classification",
        spatial_dims=int(fingerprint["spatial_dims"]),  # type: ignore[arg-type]
        class_names=list(fingerprint["class_names"]),
        data=sections.data,
        augment=sections.augment,
        model=sections.model,
        optim=sections.optim,
        train=sections.train,
        classification=ClassificationOptions(class_weights=class_weights, label_smoothing=0.0 if multilabel else 0.05),
        notes=notes,
    )


def classification_cost(fingerprint: dict[str, Any]) -> Any:
    """The CPU budget rule's cost counter for a classifier of this data."""
    return cost_counter(fingerprint, outputs=max(2, len(fingerprint["class_names"])))
