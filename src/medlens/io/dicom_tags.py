"""What medlens takes from a DICOM header: metadata, identifiers, and a safe way to open files.

Identifiers (patient, study, series) are kept apart from the other metadata so that de-identified
pipelines can drop them in one place (see :class:`medlens.core.image.Image`).
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medlens.core.errors import InputError

logger = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

IDENTIFIER_TAGS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
)

META_TAGS = {
    "Modality": "modality",
    "SOPClassUID": "sop_class_uid",
    "SeriesDescription": "series_description",
    "SeriesNumber": "series_number",
    "PhotometricInterpretation": "photometric_interpretation",
    "BitsStored": "bits_stored",
    "Manufacturer": "manufacturer",
    "BodyPartExamined": "body_part",
    "SliceThickness": "slice_thickness",
    "ImageType": "image_type",
}


def has_dicom_preamble(path: Path) -> bool:
    """Whether a file carries the 128-byte preamble and ``DICM`` magic of a DICOM Part 10 file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def open_dataset(path: Path, stop_before_pixels: bool = False, force: bool = False) -> Dataset:
    """Read a DICOM file (also ``.dcm.gz``), raising :class:`InputError` naming the file on failure."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels, force=force)
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=force)
    except InvalidDicomError as exc:
        raise InputError(path, f"not a DICOM file ({exc})") from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"unreadable DICOM file, truncated or corrupt ({type(exc).__name__}: {exc})") from exc


def has_pixels(ds: Dataset) -> bool:
    """Whether the dataset holds an image (pixel data of any kind)."""
    return any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _plain(value: Any) -> Any:
    """A DICOM value as plain Python (str, float, int or list of them) for JSON-friendly metadata."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pydicom.valuerep.DSfloat | float):
        return float(value)
    if isinstance(value, pydicom.valuerep.IS | int):
        return int(value)
    return str(value)


def first_float(value: Any) -> float | None:
    """The first number of a possibly multi-valued numeric element (window centre and width are)."""
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return float(value[0]) if len(value) else None
    return float(value)


def identifiers_of(ds: Dataset) -> dict[str, str]:
    """Patient, study and series identifiers present in the header, as strings."""
    return {tag: str(ds.get(tag)) for tag in IDENTIFIER_TAGS if ds.get(tag) not in (None, "")}


def meta_of(ds: Dataset) -> dict[str, Any]:
    """Non-identifying metadata that matters downstream: modality, rescale, window, photometry."""
    meta: dict[str, Any] = {"source_format": "dicom"}
    for tag, key in META_TAGS.items():
        value = ds.get(tag)
        if value not in (None, ""):
            meta[key] = _plain(value)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None:
        meta["transfer_syntax"] = f"{ts.name} ({ts})"
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    meta["rescale_slope"] = float(slope) if slope not in (None, "") else 1.0
    meta["rescale_intercept"] = float(intercept) if intercept not in (None, "") else 0.0
    if ds.get("RescaleType"):
        meta["rescale_type"] = str(ds.RescaleType)
    center, width = first_float(ds.get("WindowCenter")), first_float(ds.get("WindowWidth"))
    if center is None and "SharedFunctionalGroupsSequence" in ds:
        voi = _group_item(ds.SharedFunctionalGroupsSequence[0], "FrameVOILUTSequence")
        if voi is not None:
            center, width = first_float(voi.get("WindowCenter")), first_float(voi.get("WindowWidth"))
    if center is not None and width is not None:
        meta["window_center"], meta["window_width"] = center, width
    return meta


def _group_item(group: Dataset, sequence: str) -> Dataset | None:
    """The single item of a functional-group macro sequence, or None."""
    seq = group.get(sequence)
    return seq[0] if seq else None


def frame_attribute(ds: Dataset, frame: int, sequence: str, attribute: str) -> Any:
    """Look up a functional-group attribute for one frame: per-frame first, then shared."""
    groups = []
    if "PerFrameFunctionalGroupsSequence" in ds and frame < len(ds.PerFrameFunctionalGroupsSequence):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        item = _group_item(group, sequence)
        if item is not None and attribute in item:
            return item.get(attribute)
    return None
