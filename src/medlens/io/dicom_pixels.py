"""DICOM pixel data to numbers: decoding (compressed syntaxes through pydicom's plugins) and rescale.

JPEG baseline/lossless, JPEG 2000 and RLE decode through the pylibjpeg plugins pydicom finds on its own
(pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle are dependencies).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medlens.core.errors import InputError

logger = logging.getLogger(__name__)


def decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
    """Decode the stored pixel values of a dataset, YBR colour converted to RGB.

    Returns:
        ``(rows, columns)``, ``(rows, columns, samples)``, or with a leading frame axis for multi-frame.

    Raises:
        InputError: when the pixel data is missing, truncated, or in a syntax no installed plugin decodes.
    """
    try:
        return np.asarray(ds.pixel_array)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError) as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax = f" (transfer syntax {ts.name})" if ts is not None else ""
        raise InputError(path, f"cannot decode pixel data{syntax}: {exc}") from exc


def apply_rescale(stack: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Apply per-slice RescaleSlope and RescaleIntercept (stored value to modality units, e.g. HU).

    Integer results keep a compact integer type (int16 when it fits, as dcm2niix writes); anything else is
    float32.

    Args:
        stack: ``(N, ...)`` stored values, one entry per slice or frame.
        slopes: ``(N,)`` slopes.
        intercepts: ``(N,)`` intercepts.
    """
    slopes = np.asarray(slopes, dtype=float)
    intercepts = np.asarray(intercepts, dtype=float)
    if np.all(slopes == 1.0) and np.all(intercepts == 0.0):
        return stack
    shape = (-1,) + (1,) * (stack.ndim - 1)
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if integral and np.issubdtype(stack.dtype, np.integer):
        out = stack.astype(np.int64) * slopes.astype(np.int64).reshape(shape) + intercepts.astype(np.int64).reshape(
            shape
        )
        return compact_integers(out)
    return (stack.astype(np.float32) * slopes.reshape(shape) + intercepts.reshape(shape)).astype(np.float32)


def compact_integers(values: np.ndarray) -> np.ndarray:
    """The smallest of int16, uint16, int32 that holds ``values`` exactly (int64 otherwise)."""
    if values.size == 0:
        return values.astype(np.int16)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values


def stack_to_channel_first(stack: np.ndarray, samples: int) -> np.ndarray:
    """Reorder a slice stack to the :class:`Image` layout.

    Args:
        stack: ``(K, rows, cols)`` or ``(K, rows, cols, samples)``.
        samples: SamplesPerPixel (1 grey, 3 colour).

    Returns:
        ``(C, cols, rows, K)``: index i along a row, j down a column, k across slices.
    """
    if samples == 1:
        return stack.transpose(2, 1, 0)[None]  # (1, cols, rows, K)
    return stack.transpose(3, 2, 1, 0)  # (C, cols, rows, K)


def planar_to_channel_first(pixels: np.ndarray, samples: int) -> np.ndarray:
    """One 2D picture without patient geometry to ``(C, H, W)`` (rows first, as PNG)."""
    if samples == 1:
        return pixels[None]  # (1, H, W)
    return pixels.transpose(2, 0, 1)  # (C, H, W)


def invert_monochrome1(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Flip MONOCHROME1 stored values (white is low) so that higher always means brighter.

    Inverted within the stored bit range, as GDCM (and so SimpleITK) and dcm2niix do, so that models see
    one intensity convention whatever the photometric interpretation of each file.
    """
    bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return (-1 - stored.astype(np.int64)).astype(stored.dtype)  # two's complement: min <-> max
    return ((1 << bits) - 1 - stored.astype(np.int64)).astype(stored.dtype)


def note_photometric(meta: dict[str, Any], ds: Dataset) -> None:
    """Record the conversions applied while decoding (MONOCHROME1 inverted, YBR turned into RGB).

    The header window of a MONOCHROME1 image is mirrored with the values, so it still shows the same range.
    """
    stored = meta.get("photometric_interpretation", "")
    if stored == "MONOCHROME1":
        meta["photometric_interpretation"] = "MONOCHROME2"
        meta["stored_photometric_interpretation"] = stored
        if "window_center" in meta:
            slope, intercept = meta.get("rescale_slope", 1.0), meta.get("rescale_intercept", 0.0)
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            top = -1 if signed else (1 << int(ds.get("BitsStored", 16))) - 1  # s -> top - s
            meta["window_center"] = slope * top + 2 * intercept - meta["window_center"]
    elif stored.startswith("YBR"):
        meta["photometric_interpretation"] = "RGB"
        meta["stored_photometric_interpretation"] = stored
