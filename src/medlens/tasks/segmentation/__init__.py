"""Segmentation of images and volumes (2D, 3D, and volumes slice by slice), in the spirit of nnU-Net.

Modules: :mod:`.config` (the plan section), :mod:`.fingerprint` and :mod:`.planning` (nnU-Net's rules),
:mod:`.preprocessing` (canonical orientation, spacing, normalisation and the way back), :mod:`.augment`,
:mod:`.module` (network and training step), :mod:`.training` (data, post-processing chosen on validation),
:mod:`.inference` (sliding window), :mod:`.prediction`, :mod:`.metrics`, :mod:`.report`, :mod:`.evaluation`,
:mod:`.export`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlens.tasks.base import Calibration, Task, implemented_in, register_task
from medlens.tasks.segmentation.config import SegmentationPlan

if TYPE_CHECKING:
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Dataset


@register_task
class SegmentationTask(Task):
    name = "segmentation"
    model_output = "pixel"
    plan_type = SegmentationPlan
    description = "a class per pixel or voxel (label map), 2D or 3D"
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")
    privacy_refused = (
        "its Dice loss is computed over the whole batch (batch=True), so one case's gradient depends on the others "
        "and DP-SGD's per-case clipping would not bound it"
    )
    explain_images = 1  # whole cases: each is many forward passes of a whole volume
    explain_training_methods = ("gradcam", "gradcam++", "eigencam")  # IG: 2 x 24 whole-volume passes with gradients

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        from medlens.tasks.segmentation.fingerprint import segmentation_statistics

        return {"segmentation": segmentation_statistics(dataset)}

    plan = implemented_in("medlens.tasks.segmentation.planning:plan_segmentation")
    build_network = implemented_in("medlens.tasks.segmentation.module:build_network")
    prepare = implemented_in("medlens.tasks.segmentation.training:PreparedCases")
    loaders = implemented_in("medlens.tasks.segmentation.training:loaders")
    module = implemented_in("medlens.tasks.segmentation.module:SegmentationModule")
    calibrate = implemented_in("medlens.tasks.segmentation.training:calibrate")

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        seg = plan.segmentation
        return [
            f"Configuration {seg.configuration}: patch {plan.data.input_size} at {seg.target_spacing} mm (RAS)",
            "Post-processing (chosen on validation): keep largest component for classes "
            f"{seg.keep_largest_component or 'none'}",
        ]

    predict = implemented_in("medlens.tasks.segmentation.prediction:predict_images")
    evaluate = implemented_in("medlens.tasks.segmentation.evaluation:evaluate")
    export_graph = implemented_in("medlens.tasks.segmentation.export:export_graph")
    graph_check = implemented_in("medlens.tasks.segmentation.compression:graph_check")
    findings = implemented_in("medlens.tasks.segmentation.findings:segmentation_findings")
    explainer = implemented_in("medlens.tasks.segmentation.explain:explainer")
