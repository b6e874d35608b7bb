"""The segmentation section of the plan (``plan.segmentation``): geometry, network topology, loss, inference.

Kept apart from :mod:`medlens.plan.schema` so that module stays about every task; the rules that fill it are
in :mod:`medlens.plan.segmentation`. Shared choices live in the usual sections: patch size is
``data.input_size``, batch size and schedule are ``train`` and ``optim``, augmentation ranges ``augment``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SegmentationPlan(BaseModel):
    """Segmentation-only choices (nnU-Net's plan, written down)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    configuration: Literal["2d", "3d", "2d_slices"] = Field(
        description="2d: pictures; 3d: volumes in 3D patches; 2d_slices: volumes segmented slice by slice"
    )
    target_spacing: list[float] = Field(description="every case is resampled to this spacing (mm) before the network")
    kernels: list[list[int]] = Field(description="convolution kernel per stage and axis (DynUNet kernel_size)")
    strides: list[list[int]] = Field(description="down-sampling per stage and axis (DynUNet strides; first is 1s)")
    filters: list[int] = Field(description="feature maps per stage")
    deep_supervision: bool = True
    deep_supervision_heads: int = Field(2, description="extra low-resolution outputs supervised in training")
    normalization: list[Literal["ct", "zscore"]] = Field(
        description="per channel: ct clips to foreground percentiles then z-scores with foreground statistics; "
        "zscore normalises each case by its own mean and standard deviation"
    )
    ct_clip: list[list[float]] | None = Field(None, description="per channel [low, high] for ct channels")
    ct_mean: list[float] | None = None
    ct_std: list[float] | None = None
    foreground_oversampling: float = Field(0.33, description="share of patches centred on foreground")
    loss: Literal["dice_ce"] = "dice_ce"
    iterations_per_epoch: int = Field(250, description="training batches between validations")
    val_max_cases: int = Field(50, description="validation uses at most this many whole cases")
    sw_overlap: float = Field(0.5, description="sliding-window overlap at validation and prediction")
    sw_mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = 4
    mirror_axes: list[int] = Field(default_factory=list, description="spatial axes mirrored by test-time augmentation")
    keep_largest_component: list[int] = Field(
        default_factory=list, description="foreground classes reduced to their largest connected component"
    )
    check_largest_component: bool = Field(
        True, description="after training, turn keep_largest_component on per class only if it helps on validation"
    )
    why: str = ""

    @model_validator(mode="after")
    def _check_topology(self) -> SegmentationPlan:
        dims = len(self.target_spacing)
        if len(self.kernels) != len(self.strides) or len(self.filters) != len(self.kernels):
            raise ValueError("kernels, strides and filters need one entry per stage")
        if any(len(k) != dims for k in self.kernels) or any(len(s) != dims for s in self.strides):
            raise ValueError(f"every kernel and stride needs {dims} values (one per axis)")
        if self.strides and any(s != 1 for s in self.strides[0]):
            raise ValueError("the first stage's strides must be 1 (full resolution)")
        if not 0 <= self.sw_overlap < 1:
            raise ValueError("sw_overlap must be in [0, 1)")
        if not 0 <= self.foreground_oversampling <= 1:
            raise ValueError("foreground_oversampling must be in [0, 1]")
        return self

    def divisor(self) -> list[int]:
        """What the patch size must be a multiple of, per axis (the product of the strides)."""
        out = [1] * len(self.target_spacing)
        for stride in self.strides:
            out = [a * b for a, b in zip(out, stride, strict=True)]
        return out
