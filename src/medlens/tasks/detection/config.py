"""The detection section of the plan (``plan.detection``): anchors, scales, box-aware augmentation, thresholds.

Kept apart from :mod:`medlens.plan.schema` so that module stays about every task; the rules that fill it are
in :mod:`medlens.plan.detection`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DetectionPlan(BaseModel):
    """Detection-only choices; shared ones live in the usual sections: input size (``data.input_size``, the box
    images are fitted into), network (``model``), flips, brightness and contrast (``augment``), batch size and
    schedule (``train``, ``optim``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    anchor_sizes: list[list[float]] | None = Field(
        None, description="anchor sides in input pixels, one list per feature level (P3, P4, ...); null: anchor-free"
    )
    aspect_ratios: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0], description="anchor height / width")
    train_short_sides: list[int] = Field(
        default_factory=list, description="short sides drawn at random per training batch (scale jitter)"
    )
    crop_probability: float = Field(
        0.0, description="chance of an IoU-constrained random crop (boxes cut to it, slivers dropped)"
    )
    saturation: float = 0.0
    hue: float = 0.0
    eval_score_threshold: float = Field(0.05, description="lowest score kept for mAP (COCO practice)")
    score_threshold: float | None = Field(
        None, description="operating score for predictions (best F1 at IoU 0.5 on validation; chosen if null)"
    )
    nms_iou: float = Field(0.5, description="IoU above which lower-scored boxes of a class are suppressed")
    nms_candidates: list[float] = Field(
        default_factory=lambda: [0.4, 0.5, 0.6], description="NMS IoUs tried on validation; the best mAP@.5 wins"
    )
    detections_per_image: int = 100
    why: str = ""

    @model_validator(mode="after")
    def _check(self) -> DetectionPlan:
        if not 0 < self.nms_iou <= 1 or any(not 0 < v <= 1 for v in self.nms_candidates):
            raise ValueError("NMS IoU thresholds must be in (0, 1]")
        if not 0 <= self.crop_probability <= 1:
            raise ValueError("crop_probability must be in [0, 1]")
        if any(r <= 0 for r in self.aspect_ratios):
            raise ValueError("aspect_ratios must be positive")
        return self
