"""Classification and multi-label classification of whole images, 2D and 3D.

Modules: :mod:`.config` (the plan section), :mod:`.planning` (rules), :mod:`.module` (network and training
step), :mod:`.training` (data and the operating threshold), :mod:`.prediction` (the typed result),
:mod:`.metrics`, :mod:`.plots`, :mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlens.core.errors import InputError
from medlens.tasks.base import Calibration, Task, implemented_in, register_task
from medlens.tasks.classification.config import ClassificationPlan

if TYPE_CHECKING:
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Dataset


def class_counts(dataset: Dataset, split: str) -> list[int]:
    """Cases per class (positives per label for multi-label) in one split."""
    counts = [0] * dataset.num_classes
    for case in dataset.split(split):
        if dataset.spec.task == "multilabel":
            counts = [a + b for a, b in zip(counts, dataset.label_vector(case), strict=True)]
        else:
            counts[dataset.class_index(case)] += 1
    return counts


@register_task
class ClassificationTask(Task):
    name = "classification"
    aliases = ("multilabel",)
    plan_type = ClassificationPlan
    description = "one class per image (or several labels per image), 2D or 3D"
    batch_size = 64
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")
    table_importer = "csv"
    table_label = "categorical"

    def one_class_per_image(self, dataset: Dataset) -> bool:
        return dataset.spec.task != "multilabel"

    def check_dataset(self, dataset: Dataset) -> None:
        super().check_dataset(dataset)
        missing = [n for n, c in zip(dataset.spec.classes, class_counts(dataset, "train"), strict=True) if c == 0]
        if missing:
            raise InputError(
                dataset.root / dataset.spec.manifest, f"class(es) with no training case: {', '.join(missing)}"
            )

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        return {"class_counts": {s: class_counts(dataset, s) for s in ("train", "val", "test")}}

    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> ClassificationPlan:
        from medlens.tasks.classification.planning import classification_cost, plan_classification

        cost = None if has_gpu else classification_cost(fingerprint)
        return plan_classification(fingerprint, has_gpu=has_gpu, cost=cost)

    build_network = implemented_in("medlens.tasks.classification.module:build_network")
    prepare = implemented_in("medlens.tasks.classification.training:prepare")
    loaders = implemented_in("medlens.tasks.classification.training:loaders")
    module = implemented_in("medlens.tasks.classification.module:ClassificationModule")
    calibrate = implemented_in("medlens.tasks.classification.training:calibrate")

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        threshold = calibration.threshold
        lines = [
            f"Operating threshold (chosen on validation): {threshold if threshold is not None else 'arg-max / 0.5'}"
        ]
        applied, val = calibration.applied, calibration.info.get("calibration_on_validation", {})
        if applied:
            lines.append(
                f"Temperature scaling (chosen on validation): T = {applied['temperature']:g}; validation ECE "
                f"{val.get('ece_uncalibrated', float('nan')):.4f} before, {val.get('ece', float('nan')):.4f} after"
            )
            cut = applied["referral_threshold"]
            lines.append(
                f"Referral: cases with confidence below {cut:g} are flagged for a person to read (chosen on "
                f"validation for accuracy {applied['referral_target_accuracy']:g} on the rest; "
                f"{val.get('referred_share', 0):.1%} of validation cases referred)"
                if cut is not None and cut < 1.0
                else "Referral: no confidence cut reached the target accuracy on validation; every case is referred"
                if cut is not None
                else "Referral: none"
            )
            if applied.get("conformal_quantile") is not None:
                lines.append(
                    f"Conformal prediction sets at {applied['conformal_level']:.0%} (split conformal, LAC, on "
                    f"validation): a class is in the set when its probability is at least "
                    f"{1 - applied['conformal_quantile']:.4g}"
                )
        return lines

    predict = implemented_in("medlens.tasks.classification.prediction:predict_images")
    evaluate = implemented_in("medlens.tasks.classification.evaluation:evaluate")
    export_graph = implemented_in("medlens.tasks.classification.export:export_graph")
    graph_check = implemented_in("medlens.tasks.classification.compression:graph_check")
    distiller = implemented_in("medlens.tasks.classification.compression:distiller")
    findings = implemented_in("medlens.tasks.classification.findings:classification_findings")
    explainer = implemented_in("medlens.tasks.classification.explain:explainer")
