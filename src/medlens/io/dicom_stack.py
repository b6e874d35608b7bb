"""A stack of single-frame DICOM slices (one series) becomes one volume.

Slices are ordered along the slice normal computed from ImagePositionPatient and ImageOrientationPatient,
never by file name or InstanceNumber (which scanners number in either direction, or restart).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io.dicom_geometry import lps_to_ras, same_orientation, stack_geometry
from medlens.io.dicom_pixels import (
    apply_rescale,
    decode_pixels,
    invert_monochrome1,
    note_photometric,
    stack_to_channel_first,
)
from medlens.io.dicom_tags import identifiers_of, meta_of

logger = logging.getLogger(__name__)


def has_geometry(ds: Dataset) -> bool:
    """Whether a single-frame dataset places itself in the patient (position and orientation)."""
    return ds.get("ImagePositionPatient") is not None and ds.get("ImageOrientationPatient") is not None


def _instance_number(ds: Dataset) -> int:
    value = ds.get("InstanceNumber")
    return int(value) if value not in (None, "") else 0


def volume_from_slices(datasets: Sequence[Dataset], paths: Sequence[Path]) -> Image:
    """Build a ``(C, cols, rows, slices)`` volume with a RAS+ affine from single-frame slices of one stack.

    Args:
        datasets: the slices, with pixel data loaded lazily by pydicom, in any order.
        paths: the file each dataset came from (named in errors).

    Raises:
        InputError: when slices disagree in size or orientation, or pixel data cannot be decoded.
    """
    first = datasets[0]
    warnings: list[str] = []
    rows, cols = int(first.Rows), int(first.Columns)
    samples = int(first.get("SamplesPerPixel", 1))
    for ds, path in zip(datasets, paths, strict=True):
        if (int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1))) != (rows, cols, samples):
            raise InputError(path, f"slice size {ds.Rows}x{ds.Columns} differs from the series' {rows}x{cols}")

    if all(has_geometry(ds) for ds in datasets):
        orientation = np.asarray([float(v) for v in first.ImageOrientationPatient])
        for ds, path in zip(datasets, paths, strict=True):
            if not same_orientation(orientation, np.asarray([float(v) for v in ds.ImageOrientationPatient])):
                raise InputError(path, "slice orientation differs from the rest of the series")
        positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])  # (N, 3)
        spacing = first.get("PixelSpacing")
        if spacing is None:
            warnings.append("no PixelSpacing: in-plane spacing assumed 1 mm")
            spacing = (1.0, 1.0)
        hint = first.get("SpacingBetweenSlices") or first.get("SliceThickness")
        geometry = stack_geometry(
            positions,
            orientation,
            (float(spacing[0]), float(spacing[1])),
            slice_spacing_hint=float(hint) if hint not in (None, "") else None,
            tie_break=[_instance_number(ds) for ds in datasets],
        )
        order, affine_lps = geometry.order, geometry.affine_lps
        warnings.extend(geometry.warnings)
    else:
        logger.warning("%s: slices without position/orientation, stacked by InstanceNumber", paths[0])
        warnings.append("no ImagePositionPatient/ImageOrientationPatient: stacked by InstanceNumber, 1 mm spacing")
        order = sorted(range(len(datasets)), key=lambda i: _instance_number(datasets[i]))
        affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # identity in RAS

    stored = np.stack([decode_pixels(datasets[i], paths[i]) for i in order])  # (K, rows, cols[, S])
    if first.get("PhotometricInterpretation") == "MONOCHROME1":
        stored = invert_monochrome1(stored, first)
    slopes = [float(datasets[i].get("RescaleSlope", 1) or 1) for i in order]
    intercepts = [float(datasets[i].get("RescaleIntercept", 0) or 0) for i in order]
    # Rescale maps grey stored values to modality units; it does not apply to colour pixels.
    values = apply_rescale(stored, np.asarray(slopes), np.asarray(intercepts)) if samples == 1 else stored
    if len(set(slopes)) > 1 or len(set(intercepts)) > 1:
        warnings.append("rescale slope/intercept differ between slices; each slice was rescaled on its own")

    meta = meta_of(datasets[order[0]])
    meta["n_slices"] = len(order)
    note_photometric(meta, datasets[order[0]])
    if warnings:
        logger.info("%s: %s", paths[0].parent, "; ".join(warnings))
    return Image(
        array=stack_to_channel_first(values, samples),
        affine=lps_to_ras(affine_lps),
        meta=meta,
        identifiers=identifiers_of(datasets[order[0]]),
        warnings=warnings,
    )
