"""The classifier's ONNX graph: resized images in raw units -> ensemble-mean probabilities; the plan's clipping and
normalisation are inside the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.tasks.base import Graph
from medlens.tasks.classification.config import plan_of

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleClassifier(nn.Module):
    """Every member on the normalised input, logits divided by the bundle's temperature; the mean of their
    probabilities (what ``bundle.predict`` serves)."""

    def __init__(self, bundle: Bundle) -> None:
        from medlens.tasks.classification.uncertainty import calibration_of

        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())
        self.data, self.multilabel = bundle.plan.data, plan_of(bundle).multilabel
        self.temperature = float(calibration_of(bundle).temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medlens.tasks.classification.module import probabilities
        from medlens.training.images import normalize

        x = normalize(x, self.data)
        return torch.stack([probabilities(net(x) / self.temperature, self.multilabel) for net in self.nets]).mean(0)


def export_graph(bundle: Bundle) -> Graph:
    from medlens.training.images import whole_image_graph

    module = EnsembleClassifier(bundle)
    return whole_image_graph(
        module, bundle.plan, "probabilities", 1e-3, decision_threshold=bundle.threshold, temperature=module.temperature
    )
