"""DICOM Secondary Capture for rendered pictures (overlays, heat maps), through highdicom.

The capture joins the patient's study when a reference DICOM of that study is given, or when the image
still carries its identifiers; otherwise it starts a new study.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from highdicom import UID
from highdicom.sc import SCImage
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.core.outputs import atomic_file
from medlens.io.dicom_geometry import LPS_TO_RAS
from medlens.io.dicom_type2 import with_type2_attributes

MANUFACTURER = "medlens"


def _orientation_letter(direction_ras: np.ndarray) -> str:
    """The DICOM patient-orientation letter a direction points most towards (L, P, H or their opposites)."""
    lps = (LPS_TO_RAS[:3, :3] @ direction_ras).ravel()
    axis = int(np.argmax(np.abs(lps)))
    positive, negative = ("L", "R"), ("P", "A")
    letters = (positive, negative, ("H", "F"))[axis]
    return letters[0] if lps[axis] > 0 else letters[1]


def _patient_orientation(image: Image) -> tuple[str, str] | None:
    """Row and column directions of the displayed picture when the image is placed in the patient."""
    if image.spatial_dims != 3 or image.meta.get("source_format") != "dicom":
        return None
    # Pictures show index i along a row and j down a column (see rendered_slice).
    return _orientation_letter(image.affine[:3, 0]), _orientation_letter(image.affine[:3, 1])


def write_secondary_capture(
    image: Image,
    path: Path,
    pixels: np.ndarray,
    reference: Dataset | str | Path | None = None,
    series_description: str = "medlens rendering",
    series_number: int = 9901,
    sources: Sequence[str | Path] = (),
    derivation: str | None = None,
    oriented: bool = True,
) -> Path:
    """Write an 8-bit picture as a DICOM Secondary Capture, atomically.

    Args:
        image: the image the picture was rendered from (identifiers, orientation, spacing).
        path: the output ``.dcm`` file.
        pixels: ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8, already rendered.
        reference: a DICOM dataset or file of the source study, whose patient and study it joins.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        sources: DICOM files the picture was derived from, listed in its Source Image Sequence (a viewer goes from
            the capture to the images it shows).
        derivation: DerivationDescription (how the picture was made).
        oriented: False when the picture is not one plane of the image (planes of several orientations side by
            side): its PatientOrientation is then left empty (unknown).
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise InputError(path, f"secondary capture needs (H, W) or (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    photometric = "RGB" if pixels.ndim == 3 else "MONOCHROME2"
    orientation = _patient_orientation(image) if oriented else None
    common = {
        "pixel_array": np.ascontiguousarray(pixels),
        "photometric_interpretation": photometric,
        "bits_allocated": 8,
        "coordinate_system": "PATIENT",
        "series_instance_uid": UID(),
        "series_number": series_number,
        "sop_instance_uid": UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "patient_orientation": orientation or ("L", "P"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's advice on one-component person names
        sc = _build(image, common, reference)
    if orientation is None:
        sc.PatientOrientation = []  # Type 2: unknown for pictures without patient geometry
    if "Laterality" not in sc:
        sc.Laterality = ""  # Type 2C, unknown here; present and empty keeps dciodvfy quiet
    sc.SeriesDescription = series_description
    if sources:
        sc.SourceImageSequence = [_source_item(source) for source in sources]
    if derivation:
        sc.DerivationDescription = derivation[:1024]
    sc.BurnedInAnnotation = "YES"  # conservative: a rendering may carry text, so de-identification flags it
    buffer = io.BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())  # type: ignore[attr-defined]
    return path


def _source_item(source: str | Path) -> Dataset:
    """A Source Image Sequence item: the SOP class and instance of a source file."""
    try:
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    except (OSError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise InputError(source, f"cannot be referenced as a source image: {exc}") from exc
    return item


def _build(image: Image, common: dict[str, Any], reference: Dataset | str | Path | None) -> SCImage:
    """The Secondary Capture joining the reference's study, or the image's own identifiers."""
    if reference is not None:
        ref = reference if isinstance(reference, Dataset) else pydicom.dcmread(reference, stop_before_pixels=True)
        (ref,) = with_type2_attributes([ref], SecondaryCaptureImageStorage)  # what the reference lacks is empty
        return SCImage.from_ref_dataset(ref_dataset=ref, **common)
    ids = image.identifiers
    return SCImage(
        study_instance_uid=ids.get("StudyInstanceUID") or UID(),
        patient_id=ids.get("PatientID"),
        patient_name=ids.get("PatientName"),
        patient_birth_date=ids.get("PatientBirthDate"),
        patient_sex=ids.get("PatientSex") if ids.get("PatientSex") in ("M", "F", "O") else None,
        accession_number=ids.get("AccessionNumber"),
        study_id=ids.get("StudyID"),
        study_date=ids.get("StudyDate"),
        study_time=ids.get("StudyTime"),
        **common,
    )
