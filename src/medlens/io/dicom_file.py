"""One DICOM file: a slice placed in the patient, a multi-frame volume, or a plain 2D picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io.dicom_multiframe import read_multiframe
from medlens.io.dicom_pixels import (
    apply_rescale,
    decode_pixels,
    invert_monochrome1,
    note_photometric,
    planar_to_channel_first,
)
from medlens.io.dicom_stack import has_geometry, volume_from_slices
from medlens.io.dicom_tags import DICOMDIR_SOP_CLASS, has_pixels, identifiers_of, meta_of, open_dataset


def read_dicom_file(path: Path) -> Image:
    """Read one DICOM file.

    - multi-frame (enhanced MR/CT, SEG): a 3D volume ``(C, cols, rows, frames)``;
    - a slice with ImagePositionPatient/ImageOrientationPatient (CT, MR): a one-slice volume
      ``(C, cols, rows, 1)``, the same as a series of one file;
    - a picture without patient geometry (CR, DX, US, secondary capture): 2D ``(C, rows, cols)``.

    Raises:
        InputError: not DICOM, truncated, no pixel data, or an undecodable transfer syntax.
    """
    ds = open_dataset(path)
    if str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
        from medlens.io.dicom_series import read_dicom_series

        return read_dicom_series(path)
    check_has_pixels(ds, path)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return read_multiframe(ds, path)
    if has_geometry(ds):
        return volume_from_slices([ds], [path])
    return read_planar(ds, path)


def check_has_pixels(ds: Dataset, path: Path) -> None:
    """Raise :class:`InputError` for DICOM objects that hold no image (RTSTRUCT, SR, presentation states)."""
    if not has_pixels(ds):
        modality = ds.get("Modality", "unknown modality")
        raise InputError(path, f"DICOM object without pixel data ({modality}): nothing to read as an image")
    missing = [k for k in ("Rows", "Columns") if ds.get(k) in (None, "")]
    if missing:
        raise InputError(path, f"pixel data without {' and '.join(missing)}: header truncated or corrupt")


def read_planar(ds: Dataset, path: Path) -> Image:
    """A 2D picture without patient position: ``(C, rows, cols)`` with in-plane spacing when known."""
    samples = int(ds.get("SamplesPerPixel", 1))
    stored = decode_pixels(ds, path)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        stored = invert_monochrome1(stored, ds)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    # Rescale maps grey stored values to modality units; it does not apply to colour pixels.
    values = apply_rescale(stored[None], np.asarray([slope]), np.asarray([intercept]))[0] if samples == 1 else stored
    warnings: list[str] = []
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings.append("no PixelSpacing or ImagerPixelSpacing: 1 mm pixels assumed")
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0])  # (row, column) index to mm
    meta = meta_of(ds)
    if warnings:
        meta["pixel_spacing_assumed"] = True  # sizes in mm from this picture would be invented
    note_photometric(meta, ds)
    return Image(
        array=planar_to_channel_first(values, samples),
        affine=affine,
        meta=meta,
        identifiers=identifiers_of(ds),
        warnings=warnings,
    )
