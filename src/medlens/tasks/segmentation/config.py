"""The segmentation section of the plan (``plan.segmentation``): geometry, network topology, loss, inference,
and the segmentation plan type.

The rules that fill it are in :mod:`.planning`. Shared choices live in the usual sections: patch size is
``data.input_size``, batch size and schedule are ``train`` and ``optim``, augmentation ranges ``augment``.
Spacings, patch sizes and axes are in the canonical (RAS) orientation every volume is turned to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medlens.training.plan import Plan, Section


class SegmentationOptions(Section):
    """Segmentation-only choices (nnU-Net's plan, written down)."""

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
    loss: Literal["dice_ce", "dice", "ce"] = Field(
        "dice_ce", description="Dice + cross-entropy (nnU-Net), soft Dice alone, or cross-entropy alone (MONAI)"
    )
    iterations_per_epoch: int = Field(250, ge=1, description="training batches between validations")
    val_max_cases: int = Field(50, ge=1, description="validation uses at most this many whole cases")
    sw_overlap: float = Field(0.5, description="sliding-window overlap at validation and prediction")
    sw_mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1)
    mirror_axes: list[int] = Field(default_factory=list, description="spatial axes mirrored by test-time augmentation")
    keep_largest_component: list[int] = Field(
        default_factory=list, description="foreground classes reduced to their largest connected component"
    )
    check_largest_component: bool = Field(
        True, description="after training, turn keep_largest_component on per class only if it helps on validation"
    )
    nsd_tolerance_mm: list[float] | None = Field(
        None, description="normalised surface Dice tolerance per foreground class (mm); null: one target voxel"
    )
    why: str = ""

    @model_validator(mode="after")
    def _check_topology(self) -> SegmentationOptions:
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
        if any(not 0 < s <= 100 for s in self.target_spacing):
            raise ValueError(f"target_spacing values must be in (0, 100] mm, got {self.target_spacing}")
        if self.nsd_tolerance_mm is not None and any(not 0 < t <= 1000 for t in self.nsd_tolerance_mm):
            raise ValueError(f"nsd_tolerance_mm values must be positive, got {self.nsd_tolerance_mm}")
        return self

    def nsd_tolerances(self, n_foreground: int) -> list[float]:
        """The NSD tolerance of each foreground class: as set, else one voxel at the target spacing."""
        if self.nsd_tolerance_mm:
            values = list(self.nsd_tolerance_mm)
            return (values * n_foreground)[:n_foreground] if len(values) == 1 else values
        return [float(max(self.target_spacing))] * n_foreground

    def divisor(self) -> list[int]:
        """What the patch size must be a multiple of, per axis (the product of the strides)."""
        out = [1] * len(self.target_spacing)
        for stride in self.strides:
            out = [a * b for a, b in zip(out, stride, strict=True)]
        return out


class SegmentationPlan(Plan):
    """A segmentation plan: the shared sections and ``segmentation``."""

    task: Literal["segmentation"]
    segmentation: SegmentationOptions

    @classmethod
    def legacy_intensity_probability(cls, probability: float) -> float:
        return 0.15  # version 1 applied each intensity change to 15% of patches, whatever augment.probability said

    @model_validator(mode="after")
    def _check_classes(self) -> SegmentationPlan:
        tolerances = self.segmentation.nsd_tolerance_mm
        if tolerances and len(tolerances) not in (1, len(self.class_names) - 1):
            n = len(self.class_names) - 1
            raise ValueError(f"segmentation.nsd_tolerance_mm needs 1 or {n} values (one per foreground class)")
        if len(self.segmentation.target_spacing) != self.spatial_dims:
            raise ValueError(f"segmentation.target_spacing needs {self.spatial_dims} values")
        if self.data.normalization != "none" or self.data.clip is not None:
            raise ValueError(
                "segmentation normalises each channel as segmentation.normalization says; data.normalization stays "
                "'none' and data.clip null (segmentation.ct_clip clips CT)"
            )
        if self.data.fit != "resize":
            raise ValueError("segmentation resamples to segmentation.target_spacing; data.fit does not apply")
        return self
