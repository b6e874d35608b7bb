"""A regressor's answer for one image: the value (the members' mean) in the target's unit, the members' spread, and
a split-conformal interval (the value ± the validation residuals' quantile at the bundle's level)."""

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
        interval: ``[low, high]``: the split-conformal interval that holds the true value for
            ``interval_level`` of cases (the value ± the ``interval_level`` quantile of the validation cases'
            absolute errors); None for a bundle made before it existed.
        interval_level: the coverage the interval aims at (e.g. 0.9).

    ``to_dict()`` adds ``member_sd`` (the members' standard deviation: the uncertainty of the ensemble; None with
    one member) beside the value and the interval.
    """

    task = "regression"
    value: float
    target: str
    unit: str = ""
    member_values: list[float] = field(default_factory=list)
    interval: list[float] | None = None
    interval_level: float | None = None

    @property
    def member_sd(self) -> float | None:
        return float(np.std(self.member_values, ddof=1)) if len(self.member_values) > 1 else None

    def fields(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "member_sd": self.member_sd,
            "interval": self.interval,
            "interval_level": self.interval_level,
        }

    def table_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"input": self.source, self.target: self.value, "member_sd": self.member_sd}
        if self.interval is not None:
            row |= {"interval_low": self.interval[0], "interval_high": self.interval[1]}
        return row


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
    half, level = interval_of(bundle)
    return [
        RegressionPrediction(
            model=bundle.name,
            source=str(image.meta.get("source", "<memory>")),
            flags=list(image.meta.get("flags", [])),
            value=round(float(values[:, i].mean()), 6),
            target=r.target,
            unit=r.unit,
            member_values=[round(float(v), 6) for v in values[:, i]],
            interval=None if half is None else [round(float(values[:, i].mean()) + d, 6) for d in (-half, half)],
            interval_level=None if half is None else level,
        )
        for i, image in enumerate(images)
    ]


def interval_of(bundle: Bundle) -> tuple[float | None, float | None]:
    """The conformal interval's half-width and level from ``bundle.yaml``'s ``calibration:`` (None, None when the
    bundle has none); a bad value is an error naming ``bundle.yaml``."""
    import math

    from medlens.core.errors import InputError
    from medlens.models.bundle import BUNDLE_FILE

    half, level = bundle.calibration.get("interval_half_width"), bundle.calibration.get("conformal_level")
    if half is None:
        return None, None
    for key, value, ok in (
        ("interval_half_width", half, lambda v: v >= 0),
        ("conformal_level", level, lambda v: 0 < v < 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok(value):
            raise InputError(bundle.root / BUNDLE_FILE, f"calibration.{key} {value!r} is not a valid number")
    return float(half), float(level)  # type: ignore[arg-type]
