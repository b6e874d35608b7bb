"""Turn any image into the network's input as the plan says: channels, size, intensity.

The same function runs at training, evaluation and prediction, driven by the plan's ``data`` section that
the bundle carries, so a model never sees differently prepared pixels in deployment.
"""

from __future__ import annotations

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.plan.schema import DataPlan


def to_input(image: Image, data: DataPlan, *, source: str = "") -> np.ndarray:
    """Channel-first float32 array of ``data.channels`` x ``data.input_size``, not yet normalised.

    Gray inputs to a colour model are repeated; colour inputs to a gray model are averaged. Resizing is
    MONAI's ``Resize`` (area-preserving anti-aliasing when shrinking).
    """
    from monai.transforms import Resize

    dims = len(data.input_size)
    if dims == 2:
        image = image.as_2d()
    array = image.array
    if image.spatial_dims != dims:
        raise InputError(source or "image", f"{image.spatial_dims}D image given to a {dims}D model")
    array = array.astype(np.float32, copy=False)
    if array.shape[0] != data.channels:
        if data.channels == 1:
            array = array.mean(axis=0, keepdims=True)
        elif array.shape[0] == 1:
            array = np.repeat(array, data.channels, axis=0)
        elif array.shape[0] == 4 and data.channels == 3:  # RGBA -> RGB
            array = array[:3]
        else:
            raise InputError(source or "image", f"{array.shape[0]} channels, the model takes {data.channels}")
    if list(array.shape[1:]) != list(data.input_size):
        mode = "bilinear" if dims == 2 else "trilinear"
        resized = Resize(spatial_size=data.input_size, mode=mode, anti_aliasing=True)(torch.from_numpy(array))
        array = np.asarray(resized.numpy() if hasattr(resized, "numpy") else resized, dtype=np.float32)
    return array


def normalize(batch: torch.Tensor, data: DataPlan) -> torch.Tensor:
    """Clip and normalise a batch (B, C, ...) with the dataset-level statistics in the plan."""
    if data.clip is not None:
        batch = batch.clamp(data.clip[0], data.clip[1])
    if data.normalization == "zscore":
        return (batch - data.mean) / max(data.std, 1e-8)
    if data.normalization == "minmax" and data.clip is not None:
        return (batch - data.clip[0]) / max(data.clip[1] - data.clip[0], 1e-8)
    return batch
