"""The network's view of a case, and the exact way back to the input's own grid.

Every image (and label map) is turned to the canonical orientation (RAS, MONAI's ``Orientation``: axes
permuted and flipped, no voxel changes) and resampled to the plan's target spacing (MONAI's ``Spacing``:
linear for intensities, nearest neighbour for labels) as a MONAI ``MetaTensor``, which records both
operations; predictions made on that grid are brought back with MONAI's inverse of the same two transforms,
to the input's own shape and affine. So a case stored in another orientation, or read from a DICOM series
instead of a NIfTI file, gets the same answer in its own geometry.

Intensities are normalised per channel before resampling (statistics of the original voxels): CT by
clipping to the dataset's foreground percentiles and z-scoring with its foreground statistics, other
modalities by each case's own mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.tasks.segmentation.config import SegmentationOptions, SegmentationPlan

CANONICAL = "RAS"


def spatial_transforms(plan: SegmentationPlan, *, label: bool = False) -> Any:
    """MONAI's ``Orientation`` (volumes) and ``Spacing`` to the plan's grid, invertible as one ``Compose``."""
    from monai.transforms import Compose, Orientation, Spacing

    seg = plan.segmentation
    pixdim = list(seg.target_spacing)
    if seg.configuration == "2d_slices":
        pixdim[through_axis(seg)] = -1.0  # MONAI: a non-positive value keeps the input's spacing on that axis
    steps: list[Any] = []
    if plan.spatial_dims == 3:
        steps.append(Orientation(axcodes=CANONICAL, labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    steps.append(
        Spacing(pixdim=pixdim, mode="nearest" if label else "bilinear", padding_mode="border", dtype=np.float32)
    )
    return Compose(steps)


def through_axis(seg: SegmentationOptions) -> int:
    """The coarse axis of a ``2d_slices`` plan (segmented slice by slice along it)."""
    return int(np.argmax(seg.target_spacing))


def normalize_channels(array: np.ndarray, seg: SegmentationOptions) -> np.ndarray:
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


@dataclass
class Prepared:
    """An image on the network's grid, with what is needed to bring results back to the input's grid."""

    tensor: torch.Tensor  # (C, *spatial) float32, normalised, canonical orientation, target spacing
    meta: Any  # the MetaTensor carrying the applied operations
    transforms: Any  # the very transforms applied (MONAI inverts only the instances it recorded)


def check_image(image: Image, plan: SegmentationPlan) -> Image:
    """The image as the plan's dimensionality (a single DICOM slice becomes 2D), its channels checked."""
    if plan.spatial_dims == 2:
        image = image.as_2d()
    source = str(image.meta.get("source", "image"))
    if image.spatial_dims != plan.spatial_dims:
        raise InputError(source, f"{image.spatial_dims}D image, the model is {plan.spatial_dims}D")
    if image.channels != len(plan.segmentation.normalization):
        raise InputError(source, f"{image.channels} channels, the model takes {len(plan.segmentation.normalization)}")
    return image


def prepare_image(image: Image, plan: SegmentationPlan) -> Prepared:
    """Normalise, reorient and resample an image to the network's grid."""
    from monai.data import MetaTensor

    image = check_image(image, plan)
    normalized = normalize_channels(image.array, plan.segmentation)
    meta = MetaTensor(torch.from_numpy(normalized), affine=torch.as_tensor(image.affine, dtype=torch.float64))
    transforms = spatial_transforms(plan)
    out = transforms(meta)
    return Prepared(out.as_tensor().contiguous(), out, transforms)


def prepare_label(mask: Image, plan: SegmentationPlan) -> np.ndarray:
    """A label map on the same grid as :func:`prepare_image` of its image: (1, *spatial) uint8."""
    from monai.data import MetaTensor

    array = torch.from_numpy(mask.array.astype(np.float32))
    meta = MetaTensor(array, affine=torch.as_tensor(mask.affine, dtype=torch.float64))
    out = spatial_transforms(plan, label=True)(meta)
    return np.rint(out.as_tensor().numpy()).astype(np.uint8)


def to_input_grid(probabilities: torch.Tensor, prepared: Prepared, plan: SegmentationPlan) -> torch.Tensor:
    """Class probabilities (K, *spatial) on the network's grid, brought back to the input's own grid."""
    from monai.data import MetaTensor

    moved = MetaTensor(probabilities.float(), affine=prepared.meta.affine)
    moved.applied_operations = list(prepared.meta.applied_operations)
    back = prepared.transforms.inverse(moved)
    return back.as_tensor()
