"""A regressor's answer for one image: the value (the members' mean) in the target's unit, and their spread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.image import Image
from medlens.core.prediction import Prediction

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


@dataclass(kw_only=True)
class RegressionPrediction(Prediction):
    """The predicted value.

    Attributes:
        value: the ensemble mean, in ``unit``.
        target: what the value is (the table column trained on).
        unit: its unit.
        member_values: each member's value, for the spread.
    """

    task = "regression"
    value: float
    target: str
    unit: str = ""
    member_values: list[float] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        spread = float(np.std(self.member_values, ddof=1)) if len(self.member_values) > 1 else None
        return {"value": self.value, "target": self.target, "unit": self.unit, "member_sd": spread}

    def table_row(self) -> dict[str, Any]:
        return {"input": self.source, self.target: self.value}


@torch.inference_mode()
def member_values(bundle: Bundle, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Each member's values (M, N) for prepared, not yet normalised inputs (N, C, *size)."""
    from medlens.tasks.regression.module import to_value
    from medlens.training.images import normalize

    plan = bundle.plan
    out = []
    for net in bundle.networks():
        chunks = [
            to_value(net(normalize(x[i : i + batch_size], plan.data)), plan)  # type: ignore[arg-type]
            for i in range(0, len(x), batch_size)
        ]
        out.append(torch.cat(chunks).numpy())
    return np.stack(out)


def predict_images(bundle: Bundle, images: Sequence[Image]) -> list[RegressionPrediction]:
    """Predict the value of images given in their own geometry (resized and normalised as the plan says)."""
    from medlens.training.images import to_input

    x = torch.from_numpy(np.stack([to_input(image, bundle.plan.data) for image in images]))
    values = member_values(bundle, x)  # (M, N)
    r = bundle.plan.regression  # type: ignore[attr-defined]
    return [
        RegressionPrediction(
            model=bundle.name,
            source=str(image.meta.get("source", "<memory>")),
            flags=list(image.meta.get("flags", [])),
            value=round(float(values[:, i].mean()), 6),
            target=r.target,
            unit=r.unit,
            member_values=[round(float(v), 6) for v in values[:, i]],
        )
        for i, image in enumerate(images)
    ]
