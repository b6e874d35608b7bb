"""2D object detection with torchvision detectors (RetinaNet, FCOS, Faster R-CNN), planned from box statistics.

Modules: :mod:`.config` (the plan section), :mod:`.fingerprint` and :mod:`.planning`, :mod:`.loading` and
:mod:`.augment` (box-aware), :mod:`.module` (network, training step, raw detections and their merge),
:mod:`.training` (thresholds chosen on validation), :mod:`.prediction`, :mod:`.metrics` (COCO, checked against
pycocotools), :mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medlens.tasks.base import Calibration, Task, implemented_in, register_task
from medlens.tasks.detection.config import DetectionPlan

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Case, Dataset
    from medlens.models.bundle import Bundle


@register_task
class DetectionTask(Task):
    name = "detection"
    model_output = "boxes"
    plan_type = DetectionPlan
    description = "boxes around objects with a class and a score, 2D"
    batch_size = 4
    explain_methods = ("eigencam", "occlusion")  # gradient-free: a box's score reaches pixels through box selection
    privacy_refused = (
        "Opacus cannot compute per-image gradients of torchvision detectors (their losses mix the images of a batch "
        "through anchor and proposal sampling, and they take lists of images)"
    )
    explain_images = 2

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        from medlens.tasks.detection.fingerprint import box_statistics

        boxes = box_statistics(dataset)
        return {"boxes": boxes, "class_counts": boxes["class_counts"]}  # objects per class, not images

    plan = implemented_in("medlens.tasks.detection.planning:plan_detection")
    build_network = implemented_in("medlens.tasks.detection.module:build_network")

    def prepare(self, dataset: Dataset, plan: Any, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        from medlens.tasks.detection.loading import BoxCases

        return BoxCases(dataset, plan, list(cases), progress)

    loaders = implemented_in("medlens.tasks.detection.loading:loaders")
    module = implemented_in("medlens.tasks.detection.module:DetectionModule")
    calibrate = implemented_in("medlens.tasks.detection.training:calibrate")

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        d = plan.detection
        val = calibration.summary.get("val_after_threshold_choice", {})
        return [
            f"Validation mAP@.5 {val.get('map50', float('nan')):.4f}, mAP@[.5:.95] {val.get('map', float('nan')):.4f}",
            f"Chosen on validation: NMS IoU {d.nms_iou}, operating score {d.score_threshold} (best F1 at IoU 0.5)",
        ]

    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.detection.prediction import detect

        return list(detect(bundle, images))

    finish_predictions = implemented_in("medlens.tasks.detection.prediction:write_batch_outputs")
    evaluate = implemented_in("medlens.tasks.detection.evaluation:evaluate")
    export_graph = implemented_in("medlens.tasks.detection.export:export_graph")
    findings = implemented_in("medlens.tasks.detection.findings:detection_findings")
    explainer = implemented_in("medlens.tasks.detection.explain:explainer")
