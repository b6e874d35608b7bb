"""Segmentation of images and volumes (2D, 3D, and volumes slice by slice), in the spirit of nnU-Net.

Modules: :mod:`.config` (the plan section), :mod:`.fingerprint` and :mod:`.planning` (nnU-Net's rules),
:mod:`.preprocessing` (canonical orientation, spacing, normalisation and the way back), :mod:`.augment`,
:mod:`.module` (network and training step), :mod:`.training` (data, post-processing chosen on validation),
:mod:`.inference` (sliding window), :mod:`.prediction`, :mod:`.metrics`, :mod:`.report`, :mod:`.evaluation`,
:mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.tasks.base import Calibration, Graph, Task, register_task
from medlens.tasks.segmentation.config import SegmentationPlan

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Case, Dataset
    from medlens.models.bundle import Bundle


@register_task
class SegmentationTask(Task):
    name = "segmentation"
    model_output = "pixel"
    plan_type = SegmentationPlan
    description = "a class per pixel or voxel (label map), 2D or 3D"
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")
    explain_images = 1  # whole cases: each is many forward passes of a whole volume
    explain_training_methods = ("gradcam", "gradcam++", "eigencam")  # IG: 2 x 24 whole-volume passes with gradients

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        from medlens.tasks.segmentation.fingerprint import segmentation_statistics

        return {"segmentation": segmentation_statistics(dataset)}

    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> SegmentationPlan:
        from medlens.tasks.segmentation.planning import plan_segmentation

        return plan_segmentation(fingerprint, has_gpu=has_gpu)

    def build_network(self, plan: Any) -> Any:
        from medlens.tasks.segmentation.module import build_network

        return build_network(plan)

    def prepare(self, dataset: Dataset, plan: Any, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        from medlens.tasks.segmentation.training import PreparedCases

        return PreparedCases(dataset, plan, cases, progress)

    def loaders(self, plan: Any, prepared: Any, member: Any) -> Any:
        from medlens.tasks.segmentation.training import loaders

        return loaders(plan, prepared, member)

    def module(self, plan: Any, budget: Any) -> Any:
        from medlens.tasks.segmentation.module import SegmentationModule

        return SegmentationModule(plan, budget=budget)

    def calibrate(self, plan: Any, nets: Sequence[Any], members: Sequence[Any], prepared: Any) -> Calibration:
        from medlens.tasks.segmentation.training import calibrate

        return calibrate(plan, nets, members, prepared)

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        seg = plan.segmentation
        return [
            f"Configuration {seg.configuration}: patch {plan.data.input_size} at {seg.target_spacing} mm (RAS)",
            "Post-processing (chosen on validation): keep largest component for classes "
            f"{seg.keep_largest_component or 'none'}",
        ]

    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.segmentation.prediction import predict_images

        return list(predict_images(bundle, images, tta=tta))

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
        from medlens.tasks.segmentation.evaluation import evaluate

        return evaluate(bundle, dataset, cases, folder, n_bootstrap=n_bootstrap, title=title, progress=progress)

    def export_graph(self, bundle: Bundle) -> Graph:
        from medlens.tasks.segmentation.export import export_graph

        return export_graph(bundle)

    def explainer(self, bundle: Bundle, image: Image, *, target: str | None = None) -> Any:
        from medlens.tasks.segmentation.explain import explainer

        return explainer(bundle, image, target)
