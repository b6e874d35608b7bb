"""The classifier's ONNX graph: resized images in raw units -> ensemble-mean probabilities; the plan's clipping and
normalisation are inside the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.tasks.base import Graph

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleClassifier(nn.Module):
    """Every member on the normalised input, logits divided by the bundle's temperature; the mean of their
    probabilities (what ``bundle.predict`` serves)."""

    def __init__(self, bundle: Bundle) -> None:
        from medlens.tasks.classification.uncertainty import calibration_of

        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())
        self.data, self.multilabel = bundle.plan.data, bundle.plan.task == "multilabel"
        self.temperature = float(calibration_of(bundle).temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medlens.tasks.classification.module import probabilities
        from medlens.training.images import normalize

        x = normalize(x, self.data)
        return torch.stack([probabilities(net(x) / self.temperature, self.multilabel) for net in self.nets]).mean(0)


def raw_like(mean: float, std: float, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A random input in the dataset's raw units (so the graph's normalisation sees realistic values)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * std + mean


def export_graph(bundle: Bundle) -> Graph:
    plan = bundle.plan
    data = plan.data
    module = EnsembleClassifier(bundle)
    return Graph(
        module=module,
        example=raw_like(data.mean, data.std, (2, data.channels, *data.input_size)),
        input_name="image",
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
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
            "decision_threshold": bundle.threshold,
            "temperature": module.temperature,
        },
        tolerance={"probabilities": 1e-3},
    )
