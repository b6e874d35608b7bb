"""What medlens takes from a DICOM header: metadata, identifiers, and a safe way to open files.

Identifiers (patient, study, series) are kept apart from the other metadata so that de-identified
pipelines can drop them in one place (see :class:`medlens.core.image.Image`).
"""

from __future__ import annotations

import gzip
import logging
import math
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
    """Read a DICOM file (also ``.dcm.gz``), raising :class:`InputError` naming the file on failure.

    The header values medlens computes with (sizes, rescale, spacing, orientation, position, window) are checked
    here, once, so that a corrupt value is an error naming the file and the element (see :func:`check_values`).
    """
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                ds = pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels, force=force)
        else:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=force)
    except InvalidDicomError as exc:
        raise InputError(path, f"not a DICOM file ({exc})") from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"unreadable DICOM file, truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    check_values(ds, path)
    return ds


# The elements the readers turn into numbers (sizes and counts; geometry, rescale and window).
_INTEGER_ELEMENTS = (
    "Rows", "Columns", "SamplesPerPixel", "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "InstanceNumber", "SeriesNumber",
)  # fmt: skip
_NUMBER_ELEMENTS = (
    "RescaleSlope", "RescaleIntercept", "PixelSpacing", "ImagerPixelSpacing", "ImageOrientationPatient",
    "ImagePositionPatient", "SliceThickness", "SpacingBetweenSlices", "WindowCenter", "WindowWidth",
)  # fmt: skip
_COUNTS = {"PixelSpacing": 2, "ImagerPixelSpacing": 2, "ImageOrientationPatient": 6, "ImagePositionPatient": 3}


def check_values(ds: Dataset, path: Path) -> None:
    """Raise :class:`InputError` naming the file and the element when a value medlens computes with is corrupt.

    pydicom reads an invalid number (``RescaleSlope`` "abc", ``NumberOfFrames`` "xy") as text with a warning;
    here it is refused, as are non-finite numbers, pixel spacings that are not positive, and an orientation that
    is not two orthogonal unit vectors. Empty values (DICOM type 2) are left to the readers' defaults.
    """
    for keyword in (*_INTEGER_ELEMENTS, *_NUMBER_ELEMENTS):
        try:
            value = ds.get(keyword)
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(path, f"{keyword} cannot be read ({exc}): corrupt header") from None
        if value is None or value == "":
            continue
        items = list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]
        try:
            numbers = [int(v) if keyword in _INTEGER_ELEMENTS else float(v) for v in items]
        except (TypeError, ValueError):
            raise InputError(path, f"{keyword} {_shown(value)} is not a number: corrupt header") from None
        if not all(math.isfinite(v) for v in numbers):
            raise InputError(path, f"{keyword} {_shown(value)} is not a finite number: corrupt header")
        count = _COUNTS.get(keyword)
        if count is not None and len(numbers) != count:
            raise InputError(path, f"{keyword} {_shown(value)} needs {count} values: corrupt header")
        if keyword.endswith("PixelSpacing") and min(numbers) <= 0:
            raise InputError(path, f"{keyword} {_shown(value)} is not positive: corrupt header")
        if keyword == "ImageOrientationPatient" and not _orthonormal(numbers):
            raise InputError(path, f"{keyword} {_shown(value)} is not two orthogonal unit vectors: corrupt header")


def _orthonormal(cosines: list[float], tol: float = 1e-2) -> bool:
    row, col = cosines[:3], cosines[3:]
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    return abs(math.hypot(*row) - 1) < tol and abs(math.hypot(*col) - 1) < tol and abs(dot) < tol


def _shown(value: object) -> str:
    if isinstance(value, pydicom.multival.MultiValue | list):
        return "[" + ", ".join(repr(str(v)[:20]) for v in value) + "]"
    return repr(str(value)[:60])


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
