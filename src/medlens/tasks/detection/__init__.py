"""2D object detection with torchvision detectors (RetinaNet, FCOS, Faster R-CNN), planned from box statistics.

Modules: :mod:`.config` (the plan section), :mod:`.fingerprint` and :mod:`.planning`, :mod:`.loading` and
:mod:`.augment` (box-aware), :mod:`.module` (network, training step, raw detections and their merge),
:mod:`.training` (thresholds chosen on validation), :mod:`.prediction`, :mod:`.metrics` (COCO, checked against
pycocotools), :mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.tasks.base import Calibration, Graph, Task, register_task
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
    explain_images = 2

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        from medlens.tasks.detection.fingerprint import box_statistics

        boxes = box_statistics(dataset)
        return {"boxes": boxes, "class_counts": boxes["class_counts"]}  # objects per class, not images

    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> DetectionPlan:
        from medlens.tasks.detection.planning import plan_detection

        return plan_detection(fingerprint, has_gpu=has_gpu)

    def build_network(self, plan: Any) -> Any:
        from medlens.tasks.detection.module import build_network

        return build_network(plan)

    def prepare(self, dataset: Dataset, plan: Any, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        from medlens.tasks.detection.loading import BoxCases

        return BoxCases(dataset, plan, list(cases), progress)

    def loaders(self, plan: Any, prepared: Any, member: Any) -> Any:
        from medlens.tasks.detection.loading import loaders

        return loaders(plan, prepared, member)

    def module(self, plan: Any, budget: Any) -> Any:
        from medlens.tasks.detection.module import DetectionModule

        return DetectionModule(plan, budget=budget)

    def calibrate(self, plan: Any, nets: Sequence[Any], members: Sequence[Any], prepared: Any) -> Calibration:
        from medlens.tasks.detection.training import calibrate

        return calibrate(plan, nets, members, prepared)

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

    def finish_predictions(self, folder: Path, predictions: Sequence[Prediction]) -> None:
        from medlens.tasks.detection.prediction import write_batch_outputs

        write_batch_outputs(folder, predictions)

    def evaluate(
        self,
        bundle: Bundle,
        dataset: Dataset,
        cases: Sequence[Case],
        folder: Path,
        *,
        n_bootstrap: int,
        title: str,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        from medlens.tasks.detection.evaluation import evaluate

        return evaluate(bundle, dataset, cases, folder, n_bootstrap=n_bootstrap, title=title, progress=progress)

    def export_graph(self, bundle: Bundle) -> Graph:
        from medlens.tasks.detection.export import export_graph

        return export_graph(bundle)

    def explainer(self, bundle: Bundle, image: Image, *, target: str | None = None) -> Any:
        from medlens.tasks.detection.explain import explainer

        return explainer(bundle, image, target)
