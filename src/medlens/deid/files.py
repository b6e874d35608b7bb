"""Reading one input file (or saying precisely why it is skipped) and writing one output file atomically."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from medlens.core.errors import InputError
from medlens.core.outputs import atomic_file

_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


class Skipped(Exception):
    """An input that is accounted for but not written; the message is the reason shown to the user."""


class WriteFailed(Exception):
    """An output file could not be written (a full disk, no permission, a file in the way): the run stops.

    Args are (target path, the OS error's text), plain strings so the error crosses from a worker process.
    """


def unreadable(exc: BaseException) -> str:
    """The one-line reason for a file pydicom could not read or write (its messages may embed a traceback)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"unreadable: {type(exc).__name__}: {first}"


def _last_element_truncated(ds: Dataset) -> bool:
    """pydicom reads a cut-off final value without complaint; compare its declared and read lengths."""
    keys = list(ds.keys())
    if not keys:
        return False
    raw = ds.get_item(keys[-1])
    length = getattr(raw, "length", None)
    value = getattr(raw, "value", None)
    if length is None or length == _UNDEFINED or not isinstance(value, bytes | bytearray):
        return False
    return len(value) < length


def read_dicom(path: Path) -> Dataset:
    """Read a DICOM file, or raise ``Skipped`` with why (not DICOM, unreadable, truncated, DICOMDIR)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                # No preamble: old ACR-NEMA style files (the pydicom RTSTRUCT sample) still parse with force.
                ds = pydicom.dcmread(path, force=True)
                if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                    raise Skipped("not DICOM (no DICM header and no SOP Class/Instance UID)") from None
    except Skipped:
        raise
    except (EOFError, OSError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise Skipped(unreadable(exc)) from None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        raise Skipped("DICOMDIR media index (names the original files; rebuild one from the output)")
    if len(ds) == 0:
        raise Skipped("truncated: no data set after the file meta header")
    if _last_element_truncated(ds):
        raise Skipped("truncated: the last element is shorter than its declared length")
    if "Rows" in ds and not any(tag in ds for tag in _PIXEL_TAGS):
        raise Skipped("truncated: image attributes present but no pixel data")
    for keyword, name in (("SOPInstanceUID", "SOP Instance UID"), ("SOPClassUID", "SOP Class UID")):
        try:
            str(getattr(ds, keyword))
        except AttributeError:
            raise Skipped(f"not a DICOM instance (no {name})") from None
    return ds


def ensure_file_meta(ds: Dataset) -> None:
    """Give files read without a meta header one, and drop meta elements that name the sender."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        implicit, _little = ds.original_encoding
        new_meta = FileMetaDataset()
        new_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta = new_meta
        meta = new_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDLENS_DEID"
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                    "ReceivingApplicationEntityTitle", "SourcePresentationAddress",
                    "SendingPresentationAddress", "ReceivingPresentationAddress",
                    "PrivateInformationCreatorUID", "PrivateInformation"):  # fmt: skip
        if keyword in meta:
            delattr(meta, keyword)


def write_dicom(ds: Dataset, target: Path) -> None:
    """Write ``ds`` to ``target`` through a temporary sibling, so a crash leaves no half-written file.

    Raises:
        WriteFailed: the file system refused the write; this is about the output, never about the input.
    """
    ensure_file_meta(ds)
    try:
        with atomic_file(target, "wb") as handle:
            ds.save_as(handle, enforce_file_format=True)  # type: ignore[arg-type]
    except OSError as exc:
        raise WriteFailed(str(target), str(exc)) from exc
    except InputError as exc:  # atomic_file's own "cannot be written" (a file where a folder must go, ...)
        raise WriteFailed(str(target), exc.problem) from exc
