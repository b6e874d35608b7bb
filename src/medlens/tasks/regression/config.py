"""The regression section of the plan (``plan.regression``) and the regression plan type."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medlens.training.plan import Plan, Section


class RegressionOptions(Section):
    """What is predicted, in which unit, and how errors are weighed in training."""

    target: str = Field(description="the value predicted for each image (the table's column)")
    unit: str = Field("", description="its unit, shown with predictions and metrics")
    loss: Literal["huber", "mse", "l1"] = Field(
        "huber", description="on the standardised target: Huber (delta 1 SD), squared error, or absolute error"
    )
    target_mean: float = Field(0.0, description="training targets' mean; the network learns (y - mean) / sd")
    target_sd: float = Field(1.0, gt=0, description="training targets' standard deviation")
    conformal_level: float = Field(
        0.9, ge=0.5, le=0.999, description="share of cases whose conformal interval holds the true value"
    )


class RegressionPlan(Plan):
    """A regression plan: the shared sections and ``regression``; ``class_names`` holds the target's name."""

    task: Literal["regression"]
    regression: RegressionOptions

    @model_validator(mode="after")
    def _check_target(self) -> RegressionPlan:
        if len(self.class_names) != 1:
            raise ValueError(f"a regression plan names one target in class_names, got {self.class_names}")
        return self
