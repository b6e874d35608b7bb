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
    from medlens.training.images import whole_image_graph

    r = bundle.plan.regression  # type: ignore[attr-defined]
    tolerance = 1e-3 * max(1.0, abs(r.target_sd))
    return whole_image_graph(EnsembleRegressor(bundle), bundle.plan, "value", tolerance, target=r.target, unit=r.unit)
