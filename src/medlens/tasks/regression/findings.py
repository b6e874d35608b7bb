"""A regression in the report's vocabulary: the estimated value with its unit."""

from __future__ import annotations

from typing import Any

from medlens.core.findings import rounded
from medlens.tasks.regression.prediction import RegressionPrediction


def regression_findings(prediction: RegressionPrediction) -> list[dict[str, Any]]:
    """One ``value`` finding: what was estimated (the target trained on), the value, its unit."""
    return [{"kind": "value", "name": prediction.target, "value": rounded(prediction.value), "unit": prediction.unit}]
