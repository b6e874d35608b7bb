"""Training patches: sampling with foreground oversampling, then nnU-Net-style augmentation (MONAI dictionary
transforms). Spatial changes move image and label together; intensity changes touch the image only, with the
meanings :class:`~medlens.training.plan.AugmentPlan` gives every task."""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.tasks.segmentation.config import SegmentationPlan
from medlens.tasks.segmentation.preprocessing import through_axis


def training_transforms(plan: SegmentationPlan, seed: int) -> Any:
    """The seeded MONAI pipeline from a preprocessed case ``{"image", "label"}`` to one augmented patch."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityFixedMeand,
        RandStdShiftIntensityd,
        SpatialPadd,
    )

    seg = plan.segmentation
    a = plan.augment
    patch = plan.data.input_size
    dims = len(patch)
    keys = ["image", "label"]
    p_fg = seg.foreground_oversampling
    rotate: Any
    if dims == 2:
        rotate = np.deg2rad(a.rotate_degrees)
    elif seg.configuration == "2d_slices":
        through = through_axis(seg)
        rotate = tuple(np.deg2rad(a.rotate_degrees) if i == through else 0.0 for i in range(3))
    else:
        rotate = (np.deg2rad(a.rotate_degrees),) * 3
    low, high = a.scale
    p = a.intensity_probability
    steps: list[Any] = [
        SpatialPadd(keys, spatial_size=patch, mode="constant"),
        RandCropByPosNegLabeld(
            keys, "label", spatial_size=patch, pos=p_fg, neg=1 - p_fg, num_samples=1, allow_smaller=False
        ),
        RandAffined(
            keys,
            prob=a.spatial_probability,
            rotate_range=rotate,
            scale_range=(low - 1, high - 1),
            translate_range=[a.translate * s for s in patch],
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        ),
    ]
    steps += [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in a.flip_axes]
    if a.brightness:
        steps.append(RandStdShiftIntensityd("image", factors=a.brightness, prob=p))
    if a.contrast:
        steps.append(RandScaleIntensityFixedMeand("image", factors=a.contrast, prob=p))
    if a.gamma:
        steps.append(RandAdjustContrastd("image", gamma=(1 - a.gamma, 1 + a.gamma), prob=p))
    if a.noise_std:
        steps.append(RandGaussianNoised("image", std=a.noise_std, prob=p))
    compose = Compose(steps)
    compose.set_random_state(seed=seed)
    return compose
