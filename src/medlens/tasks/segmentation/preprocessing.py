"""Segmentation preprocessing (resampling to the plan's spacing, per-channel normalisation), the way back
to the input's own grid, and the training augmentation pipeline (MONAI dictionary transforms).

The same functions run at training, validation, evaluation and prediction, driven by ``plan.segmentation``,
which the bundle carries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medlens.core.image import Image
from medlens.plan.schema import Plan
from medlens.plan.segmentation_schema import SegmentationPlan


def resampled_shape(image: Image, seg: SegmentationPlan) -> list[int]:
    """The image's shape at the plan's target spacing (unchanged along the slice axis of 2D-slice plans)."""
    shape = []
    for size, spacing, target in zip(image.spatial_shape, image.spacing, seg.target_spacing, strict=True):
        shape.append(max(1, round(size * spacing / target)))
    if seg.configuration == "2d_slices":
        through = int(np.argmax(seg.target_spacing))
        shape[through] = image.spatial_shape[through]
    return shape


def resize(array: torch.Tensor, shape: list[int], *, label: bool = False) -> torch.Tensor:
    """Resize a channel-first tensor (C, *spatial) to ``shape``: linear for intensities, nearest for labels."""
    if list(array.shape[1:]) == list(shape):
        return array
    mode = "nearest-exact" if label else ("bilinear" if len(shape) == 2 else "trilinear")
    x = array[None].float()  # (1, C, *spatial)
    kwargs: dict[str, Any] = {} if label else {"align_corners": False}
    out = F.interpolate(x, size=tuple(shape), mode=mode, **kwargs)[0]
    return out.to(array.dtype) if label else out


def normalize_channels(array: np.ndarray, seg: SegmentationPlan) -> np.ndarray:
    """Per channel: CT clip-and-z-score with dataset statistics, or a z-score with the case's own statistics."""
    out = np.empty(array.shape, dtype=np.float32)
    for c, scheme in enumerate(seg.normalization):
        channel = array[c].astype(np.float32)
        if scheme == "ct" and seg.ct_clip and seg.ct_mean and seg.ct_std:
            low, high = seg.ct_clip[c]
            out[c] = (np.clip(channel, low, high) - seg.ct_mean[c]) / max(seg.ct_std[c], 1e-8)
        else:
            out[c] = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
    return out


def preprocess_image(image: Image, plan: Plan) -> np.ndarray:
    """The network's view of an image: normalised, at the target spacing, (C, *spatial) float32."""
    seg = _seg(plan)
    if image.channels != len(seg.normalization):
        from medlens.core.errors import InputError

        raise InputError(
            str(image.meta.get("source", "image")),
            f"{image.channels} channels, the model takes {len(seg.normalization)}",
        )
    normalized = normalize_channels(image.array, seg)  # normalise first: statistics of the original voxels
    return resize(torch.from_numpy(normalized), resampled_shape(image, seg)).numpy()


def preprocess_label(mask: Image, image: Image, plan: Plan) -> np.ndarray:
    """The label map on the same resampled grid, (1, *spatial) uint8, nearest neighbour."""
    shape = resampled_shape(image, _seg(plan))
    return resize(torch.from_numpy(mask.array.astype(np.uint8)), shape, label=True).numpy()


def to_input_grid(probabilities: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Class probabilities (K, *spatial) at the target spacing resampled back to the input's own shape."""
    return resize(probabilities, list(shape))


def training_transforms(plan: Plan, seed: int) -> Any:
    """Patch sampling with foreground oversampling, then nnU-Net-style spatial and intensity augmentation."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        SpatialPadd,
    )

    seg = _seg(plan)
    a = plan.augment
    patch = plan.data.input_size
    dims = len(patch)
    keys = ["image", "label"]
    p_fg = seg.foreground_oversampling
    rotate: Any
    if dims == 2:
        rotate = np.deg2rad(a.rotate_degrees)
    elif seg.configuration == "2d_slices":
        through = int(np.argmax(seg.target_spacing))
        rotate = tuple(np.deg2rad(a.rotate_degrees) if i == through else 0.0 for i in range(3))
    else:
        rotate = (np.deg2rad(a.rotate_degrees),) * 3
    low, high = a.scale
    steps: list[Any] = [
        SpatialPadd(keys, spatial_size=patch, mode="constant"),
        RandCropByPosNegLabeld(
            keys, "label", spatial_size=patch, pos=p_fg, neg=1 - p_fg, num_samples=1, allow_smaller=False
        ),
        RandAffined(
            keys,
            prob=a.probability,
            rotate_range=rotate,
            scale_range=(low - 1, high - 1),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        ),
    ]
    steps += [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in a.flip_axes]
    if a.brightness:
        steps.append(RandScaleIntensityd("image", factors=a.brightness, prob=0.15))
    if a.contrast:
        steps.append(RandAdjustContrastd("image", gamma=(1 - a.contrast, 1 + a.contrast), prob=0.15))
    if a.noise_std:
        steps.append(RandGaussianNoised("image", std=a.noise_std, prob=0.15))
    compose = Compose(steps)
    compose.set_random_state(seed=seed)
    return compose


def _seg(plan: Plan) -> SegmentationPlan:
    if plan.segmentation is None:
        from medlens.core.errors import ConfigError

        raise ConfigError("segmentation", "a segmentation plan needs its 'segmentation' section (run medlens plan)")
    return plan.segmentation
