"""The detection section of the plan (``plan.detection``): anchors, scales, box-aware augmentation, thresholds;
and the detection plan type. The rules that fill it are in :mod:`.planning`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medlens.training.plan import Plan, Section


class DetectionOptions(Section):
    """Detection-only choices; shared ones live in the usual sections: input size (``data.input_size``, the box
    images are fitted into), network (``model``), flips, brightness and contrast (``augment``), batch size and
    schedule (``train``, ``optim``)."""

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
    saturation: float = Field(0.0, ge=0, le=1, description="colour images: saturation factor drawn from [1-s, 1+s]")
    hue: float = Field(0.0, ge=0, le=0.5, description="colour images: hue shift drawn from [-h, h]")
    eval_score_threshold: float = Field(0.05, ge=0, lt=1, description="lowest score kept for mAP (COCO practice)")
    score_threshold: float | None = Field(
        None, description="operating score for predictions (best F1 at IoU 0.5 on validation; chosen if null)"
    )
    nms_iou: float = Field(0.5, description="IoU above which lower-scored boxes of a class are suppressed")
    nms_candidates: list[float] = Field(
        default_factory=lambda: [0.4, 0.5, 0.6], description="NMS IoUs tried on validation; the best mAP@.5 wins"
    )
    detections_per_image: int = Field(100, ge=1, le=100000)
    why: str = ""

    @model_validator(mode="after")
    def _check(self) -> DetectionOptions:
        if not 0 < self.nms_iou <= 1 or any(not 0 < v <= 1 for v in self.nms_candidates):
            raise ValueError("NMS IoU thresholds must be in (0, 1]")
        if not 0 <= self.crop_probability <= 1:
            raise ValueError("crop_probability must be in [0, 1]")
        if any(r <= 0 for r in self.aspect_ratios):
            raise ValueError("aspect_ratios must be positive")
        if self.score_threshold is not None and not 0 <= self.score_threshold <= 1:
            raise ValueError("score_threshold must be in [0, 1]")
        if any(s < 1 for s in self.train_short_sides):
            raise ValueError("train_short_sides must be positive sizes in pixels")
        return self


class DetectionPlan(Plan):
    """A 2D detection plan: the shared sections and ``detection``."""

    task: Literal["detection"]
    spatial_dims: Literal[2] = 2
    detection: DetectionOptions = Field(default_factory=DetectionOptions)

    @model_validator(mode="after")
    def _check_read(self) -> DetectionPlan:
        unread = {
            "augment.rotate_degrees": self.augment.rotate_degrees != 0,
            "augment.scale": self.augment.scale != [1.0, 1.0],
            "augment.translate": self.augment.translate != 0,
            "data.clip": self.data.clip is not None,
            "data.normalization": self.data.normalization != "zscore",
            "data.cache": self.data.cache != "memory",
            "data.fit": self.data.fit != "resize",
            "model.dropout": self.model.dropout != 0,
        }
        wrong = [key for key, changed in unread.items() if changed]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)}: not used by detection (scale jitter is detection.train_short_sides, crops "
                "detection.crop_probability; images are z-scored by data.mean and data.std inside the detector and "
                "held in memory)"
            )
        return self

    @classmethod
    def legacy_intensity_probability(cls, probability: float) -> float:
        return probability  # version 1 jittered colours with augment.probability
