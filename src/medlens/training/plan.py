"""The typed plan. Every hyperparameter is a field here; none hides in code (STYLE.md item 4).

Unknown keys are errors, so a typo in ``--set`` or an edited ``plan.yaml`` is caught, not ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medlens.plan.detection_schema import DetectionPlan
from medlens.plan.segmentation_schema import SegmentationPlan


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataPlan(_Strict):
    input_size: list[int] = Field(description="spatial size fed to the network, per axis")
    channels: int = Field(1, description="input channels (gray images are repeated / colour averaged to match)")
    normalization: Literal["zscore", "minmax", "none"] = "zscore"
    mean: float = Field(0.0, description="intensity subtracted after clipping")
    std: float = Field(1.0, description="intensity divisor after subtracting the mean")
    clip: list[float] | None = Field(None, description="[low, high] intensity clip before normalising")
    cache: Literal["memory", "none"] = Field("memory", description="hold the resized images in memory")

    @model_validator(mode="after")
    def _check_range(self) -> DataPlan:
        if self.clip is not None and (len(self.clip) != 2 or self.clip[0] > self.clip[1]):
            raise ValueError(f"clip must be [low, high] with low <= high, got {self.clip}")
        if self.normalization == "minmax" and self.clip is None:
            raise ValueError("normalization minmax needs clip: [low, high], the range mapped to [0, 1]")
        return self


class AugmentPlan(_Strict):
    flip_axes: list[int] = Field(default_factory=list, description="spatial axes mirrored at random")
    rotate_degrees: float = 0.0
    scale: list[float] = Field(default_factory=lambda: [1.0, 1.0])
    translate: float = Field(0.0, description="fraction of the image size")
    brightness: float = 0.0
    contrast: float = 0.0
    noise_std: float = 0.0
    probability: float = Field(0.8, description="chance that the spatial transform is applied to an image")
    why: str = ""


class ModelPlan(_Strict):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = Field(None, description="local checkpoint (state dict, timm, safetensors)")
    dropout: float = 0.0
    why: str = ""


class OptimPlan(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = 0.03


class TrainPlan(_Strict):
    batch_size: int = 64
    max_epochs: int = 50
    budget_minutes: float | None = Field(None, description="wall-clock budget; the schedule anneals to it")
    early_stopping_patience: int | None = 15
    monitor: str = "val_auc"
    loss: Literal["cross_entropy", "bce"] = "cross_entropy"
    class_weights: list[float] | None = None
    label_smoothing: float = 0.0
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    num_workers: int = 0
    seed: int = 0
    val_every_epochs: int = 1
    ema_decay: float | None = Field(None, description="exponential moving average of weights for evaluation")


class Plan(_Strict):
    """Everything training needs, besides the data itself."""

    version: int = 1
    task: Literal["classification", "multilabel", "segmentation", "detection"]
    spatial_dims: Literal[2, 3]
    class_names: list[str]
    data: DataPlan
    augment: AugmentPlan
    model: ModelPlan
    optim: OptimPlan
    train: TrainPlan
    detection: DetectionPlan | None = None
    segmentation: SegmentationPlan | None = None
    notes: list[str] = Field(default_factory=list, description="why the rules chose what they chose")

    @model_validator(mode="after")
    def _check_axes(self) -> Plan:
        if len(self.data.input_size) != self.spatial_dims:
            raise ValueError(f"data.input_size {self.data.input_size} needs {self.spatial_dims} sizes (spatial_dims)")
        bad = [a for a in self.augment.flip_axes if not 0 <= a < self.spatial_dims]
        if bad:
            raise ValueError(f"augment.flip_axes {bad}: spatial axes are 0..{self.spatial_dims - 1}")
        return self
