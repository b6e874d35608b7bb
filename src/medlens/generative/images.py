"""Dataset images as tensors for a generator, and generated images as files a dataset can hold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset


def read_images(
    dataset: Dataset,
    cases: Sequence[Case],
    size: tuple[int, int],
    progress: ProgressFn | None = None,
    stage: str = "reading images",
) -> torch.Tensor:
    """Every case's image resized to ``size``, in its own intensities: (N, C, H, W) float32.

    Raises:
        InputError: an unreadable image, or one whose channel count differs from the dataset's.
    """
    from medlens.data.segmentation_cases import read_channels

    channels = len(dataset.spec.channels)
    out = torch.empty((len(cases), channels, *size), dtype=torch.float32)
    for i, case in enumerate(tracked(cases, progress, stage)):
        image = read_channels(dataset.image_paths(case), 2, case.case_id)
        pixels = torch.from_numpy(np.asarray(image.array, dtype=np.float32))  # (C, H, W)
        if pixels.shape[0] != channels:
            raise InputError(
                dataset.image_paths(case)[0], f"case {case.case_id}: {pixels.shape[0]} channel(s), not {channels}"
            )
        if tuple(pixels.shape[1:]) != size:
            pixels = torch.nn.functional.interpolate(
                pixels[None], size=size, mode="bilinear", antialias=True, align_corners=False
            )[0]
        out[i] = pixels
    return out


def to_unit(x: torch.Tensor, intensity: tuple[float, float]) -> torch.Tensor:
    """Intensities in ``intensity`` = (low, high) to [0, 1] (clipped)."""
    low, high = intensity
    return ((x - low) / (high - low)).clamp(0, 1)


def write_image(folder: Path, name: str, unit: np.ndarray, intensity: tuple[float, float]) -> str:
    """Write one generated image (C, H, W) in [0, 1] back in the training images' intensities; return its file name.

    A PNG (8-bit grey or RGB) when those intensities are 8-bit pixel values, as MedMNIST's are; a float NIfTI
    otherwise, so no intensity is rounded away.
    """
    low, high = intensity
    values = low + unit.astype(np.float64) * (high - low)  # (C, H, W)
    if low >= 0 and high <= 255 and unit.shape[0] in (1, 3):
        from PIL import Image as PILImage

        pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        picture = pixels[0] if unit.shape[0] == 1 else np.moveaxis(pixels, 0, -1)  # (H, W) or (H, W, 3)
        PILImage.fromarray(picture).save(folder / f"{name}.png")
        return f"{name}.png"
    import nibabel as nib

    volume = np.moveaxis(values.astype(np.float32), 0, -1)[:, :, None, :]  # (H, W, 1, C)
    nib.save(
        nib.Nifti1Image(volume[..., 0] if unit.shape[0] == 1 else volume, np.eye(4)), str(folder / f"{name}.nii.gz")
    )
    return f"{name}.nii.gz"


def grid_png(rows: Sequence[tuple[str, np.ndarray]], title: str = "") -> bytes:
    """A figure of labelled rows of images: each row (name, (n, C, H, W) in [0, 1])."""
    from medlens.reports.figures import figure, png

    columns = max((len(images) for _, images in rows), default=1) or 1
    fig = figure(0.9 * columns + 1.2, 0.95 * len(rows) + (0.4 if title else 0.1))
    if title:
        fig.suptitle(title, fontsize=9)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                picture = images[c]
                if picture.shape[0] == 1:
                    ax.imshow(picture[0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(np.moveaxis(picture[:3], 0, -1).clip(0, 1))
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    return png(fig)
