"""A regression in the report's vocabulary: the estimated value with its unit."""

from __future__ import annotations

from typing import Any

from medlens.core.findings import rounded
from medlens.tasks.regression.prediction import RegressionPrediction


def regression_findings(prediction: RegressionPrediction, bundle: object = None) -> list[dict[str, Any]]:
    """One ``value`` finding: what was estimated (the target trained on), the value, its unit, and the interval
    around it with its coverage when the prediction has one (calibration's ``interval`` and ``interval_level``).

    ``bundle`` is the task contract's second argument; this task's findings need nothing from it.
    """
    item = {"kind": "value", "name": prediction.target, "value": rounded(prediction.value), "unit": prediction.unit}
    interval, level = getattr(prediction, "interval", None), getattr(prediction, "interval_level", None)
    if interval is not None and level is not None:
        item |= {"interval": [rounded(v) for v in interval], "interval_level": rounded(level)}
    return [item]
