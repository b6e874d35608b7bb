"""Regression findings: the value with its unit and what it estimates."""

from __future__ import annotations

from medlens.tasks import get_task
from medlens.tasks.regression.prediction import RegressionPrediction


def test_the_value_with_its_unit() -> None:
    p = RegressionPrediction(model="m", source="x", value=1523.456789, target="eTIV", unit="mL", member_values=[1.0])
    assert get_task("regression").findings(p, None) == [  # type: ignore[arg-type]
        {"kind": "value", "name": "eTIV", "value": 1523.4568, "unit": "mL"}
    ]
