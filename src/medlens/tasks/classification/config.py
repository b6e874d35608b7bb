"""The classification section of the plan (``plan.classification``) and the classification plan type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, model_validator

from medlens.training.plan import Plan, Section

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


class ClassificationOptions(Section):
    """Classification-only choices: how classes are weighed in the loss, and what is calibrated on validation
    after training (temperature, referral, conformal sets; see :mod:`medlens.tasks.classification.uncertainty`)."""

    class_weights: list[float] | None = Field(
        None, description="loss weight per class (single-label); null: every class counts the same"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="share of each target spread over the other classes")
    temperature_scaling: bool = Field(
        True, description="fit one temperature on validation that divides every member's logits (lowest NLL)"
    )
    referral_target_accuracy: float = Field(
        0.95,
        ge=0.5,
        le=1.0,
        description="accuracy the cases not referred must reach on validation; cases less confident than the "
        "cut that reaches it are flagged for a person to read",
    )
    conformal_level: float = Field(
        0.9, ge=0.5, le=0.999, description="share of cases whose conformal prediction set holds the true class"
    )

    @model_validator(mode="after")
    def _check(self) -> ClassificationOptions:
        if self.class_weights is not None and any(not 0 < w <= 1e6 for w in self.class_weights):
            raise ValueError(f"class_weights must be positive, got {self.class_weights}")
        return self


class ClassificationPlan(Plan):
    """A classification (single-label) or multi-label plan."""

    task: Literal["classification", "multilabel"]
    classification: ClassificationOptions = Field(default_factory=ClassificationOptions)

    @model_validator(mode="after")
    def _check_classes(self) -> ClassificationPlan:
        weights = self.classification.class_weights
        if weights is not None and len(weights) != len(self.class_names):
            raise ValueError(f"classification.class_weights needs {len(self.class_names)} values, got {len(weights)}")
        if len(self.class_names) < 2 and self.task == "classification":
            raise ValueError("a classifier needs at least two classes")
        return self

    @classmethod
    def upgrade(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Version 1 kept class weights and label smoothing under ``train``."""
        train = raw.get("train") or {}
        moved = {k: train.pop(k) for k in ("class_weights", "label_smoothing") if k in train}
        raw["classification"] = {**moved, **(raw.get("classification") or {})}
        return super().upgrade(raw)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"


def plan_of(bundle: Bundle) -> ClassificationPlan:
    """A classifier bundle's plan as this task's plan type (the registry handed the bundle to this task)."""
    return cast(ClassificationPlan, bundle.plan)
