"""The detector's ONNX graph: one picture (C, H, W) of any size in raw units -> ``boxes`` (x1, y1, x2, y2 in its
pixels), ``scores`` and ``labels`` (0..K-1); resizing, normalisation and class-wise NMS over the pooled members
are inside the graph."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.tasks.base import Graph

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleDetector(nn.Module):
    """Every member's boxes above the evaluation score (no NMS), pooled, then class-wise NMS as ``merge``."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        from medlens.tasks.detection.module import set_unsuppressed

        nets = [copy.deepcopy(net) for net in bundle.networks()]
        for net in nets:
            set_unsuppressed(net)
        self.nets = nn.ModuleList(nets)
        d = bundle.plan.detection  # type: ignore[attr-defined]
        self.nms_iou, self.max_dets = float(d.nms_iou), int(d.detections_per_image)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from medlens.tasks.detection.module import merge

        out = merge([net([image])[0] for net in self.nets], self.nms_iou, self.max_dets)
        return out["boxes"], out["scores"], out["labels"] - 1


def export_graph(bundle: Bundle) -> Graph:
    plan = bundle.plan
    d = plan.detection  # type: ignore[attr-defined]
    channels = plan.data.channels
    height, width = plan.data.input_size
    generator = torch.Generator().manual_seed(0)  # an input in the dataset's raw units
    example = torch.randn((channels, height, width), generator=generator) * plan.data.std + plan.data.mean
    return Graph(
        module=EnsembleDetector(bundle),
        example=example,
        input_name="image",
        output_names=["boxes", "scores", "labels"],
        dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"}, "labels": {0: "n"}},
        input_shape=[channels, "height", "width"],
        input_meaning="one image, float32, raw pixel values (as read), any height and width",
        preprocessing={
            "input_size": plan.data.input_size,
            "channels": channels,
            "resize_short_side": d.train_short_sides[-1] if d.train_short_sides else min(plan.data.input_size),
            "operating_score_threshold": bundle.threshold,
            "nms_iou": d.nms_iou,
        },
        tolerance={"scores": 1e-3, "boxes": 1.0},  # boxes in pixels
        more_examples=[example[:, : height * 3 // 4, : width * 5 // 8].contiguous()],  # another size than traced
    )
