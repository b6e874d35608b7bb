"""The segmentation ONNX graph: a normalised patch -> ensemble-mean class probabilities per voxel.

The sliding window, reorientation, resampling and per-case normalisation stay outside the graph (as in
nnU-Net and MONAI bundles), because they depend on the case's size; ``export.json`` records them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.tasks.base import Graph

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleSegmenter(nn.Module):
    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(net(x), dim=1) for net in self.nets]).mean(0)


def export_graph(bundle: Bundle) -> Graph:
    plan = bundle.plan
    seg = plan.segmentation  # type: ignore[attr-defined]
    channels, size = plan.data.channels, plan.data.input_size
    spatial = {d + 2: f"size{d}" for d in range(len(size))}
    return Graph(
        module=EnsembleSegmenter(bundle),
        example=torch.randn((1, channels, *size), generator=torch.Generator().manual_seed(0)),
        input_name="patch",
        output_names=["probabilities"],
        dynamic_axes={"patch": {0: "batch", **spatial}, "probabilities": {0: "batch", **spatial}},
        input_shape=["batch", channels, *[f"size{d}" for d in range(len(size))]],
        input_meaning="normalised patches at the target spacing in RAS orientation; sizes divisible by the network's "
        "total stride",
        preprocessing={
            "orientation": "RAS" if plan.spatial_dims == 3 else None,
            "target_spacing": seg.target_spacing,
            "configuration": seg.configuration,
            "normalization": seg.normalization,
            "ct_clip": seg.ct_clip,
            "ct_mean": seg.ct_mean,
            "ct_std": seg.ct_std,
            "patch_size": size,
            "sliding_window": {"overlap": seg.sw_overlap, "mode": seg.sw_mode},
            "keep_largest_component": seg.keep_largest_component,
        },
        tolerance={"probabilities": 1e-3},
    )
