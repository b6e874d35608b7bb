"""The regressor's ONNX graph: resized images in raw units -> the ensemble-mean value in the target's unit; the
plan's clipping, normalisation and the target's de-standardisation are inside the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.tasks.base import Graph

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleRegressor(nn.Module):
    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())
        self.plan = bundle.plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medlens.tasks.regression.module import to_value
        from medlens.training.images import normalize

        x = normalize(x, self.plan.data)
        return torch.stack([to_value(net(x), self.plan) for net in self.nets]).mean(0)  # type: ignore[arg-type]


def export_graph(bundle: Bundle) -> Graph:
    plan = bundle.plan
    data = plan.data
    r = plan.regression  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(0)  # an input in the dataset's raw units
    example = torch.randn((2, data.channels, *data.input_size), generator=generator) * data.std + data.mean
    return Graph(
        module=EnsembleRegressor(bundle),
        example=example,
        input_name="image",
        output_names=["value"],
        dynamic_axes={"image": {0: "batch"}, "value": {0: "batch"}},
        input_shape=["batch", data.channels, *data.input_size],
        input_meaning="images resized to input_size, float32, raw units (clipping and normalisation are in the graph)",
        preprocessing={
            "input_size": data.input_size,
            "channels": data.channels,
            "orientation": "RAS (volumes are reoriented before resizing)" if plan.spatial_dims == 3 else None,
            "clip": data.clip,
            "normalization": data.normalization,
            "mean": data.mean,
            "std": data.std,
            "target": r.target,
            "unit": r.unit,
        },
        tolerance={"value": 1e-3 * max(1.0, abs(r.target_sd))},
    )
