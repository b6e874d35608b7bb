"""The sequence model's ONNX graph: encoded visits with their mask as one input, the ensemble's probability of the
positive outcome and its attention over visits as outputs.

ONNX Runtime callers encode visits as training did (``preprocessing`` in ``export.json`` lists every feature's
mean, SD, levels and missingness column) and append the mask (1: a real visit, 0: padding after the visits) as the
last column, so one tensor ``(subjects, max_visits, width + 1)`` goes in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medlens.tasks.base import Graph

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class EnsembleSequence(nn.Module):
    """Packed visits ``(B, V, F + 1)`` (the last column the mask) to probability ``(B,)`` and attention ``(B, V)``,
    the members' means."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.nets = nn.ModuleList(bundle.networks())

    def forward(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = packed[..., :-1], packed[..., -1] > 0.5
        outputs = [net(x, mask) for net in self.nets]
        probability = torch.stack([torch.sigmoid(logit) for logit, _ in outputs]).mean(0)
        attention = torch.stack([a for _, a in outputs]).mean(0)
        return probability, attention


def export_graph(bundle: Bundle) -> Graph:
    """The graph, checked on subjects with 1 to ``max_visits`` visits."""
    s = bundle.plan.sequence  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)

    def example(n: int) -> torch.Tensor:
        packed = np.zeros((n, s.max_visits, s.width + 1), np.float32)
        for i in range(n):
            visits = 1 + i % s.max_visits
            packed[i, :visits, :-1] = rng.normal(size=(visits, s.width))
            packed[i, :visits, -1] = 1
        return torch.from_numpy(packed)

    return Graph(
        module=EnsembleSequence(bundle),
        example=example(max(2, s.max_visits)),
        input_name="visits",
        output_names=["probability", "attention"],
        dynamic_axes={"visits": {0: "subjects"}, "probability": {0: "subjects"}, "attention": {0: "subjects"}},
        input_shape=["subjects", s.max_visits, s.width + 1],
        input_meaning="each subject's encoded visits in order (padding after them), the last column 1 for a real "
        "visit and 0 for padding",
        preprocessing={
            "features": [f.model_dump() for f in s.features],
            "subject": s.subject,
            "order": s.order,
            "max_visits": s.max_visits,
            "images": [
                {
                    "column": i.column,
                    "encoder": i.encoder,
                    "digest": i.digest,
                    "features": i.features,
                    "how": f"each visit's image through the encoder ({i.description}), one number per feature",
                }
                for i in s.images
            ],
            "encoding": "per feature in order: a number as (value - mean) / sd (missing: 0), a category one-hot over "
            "levels (missing or unseen: zeros), then a 0/1 missing column where missing_indicator; the last "
            "max_visits visits, first at position 0",
        },
        tolerance={"probability": 1e-4, "attention": 1e-4},
        more_examples=[example(1), example(7)],
    )
