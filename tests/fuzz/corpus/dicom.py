"""Mutations of DICOM files and DICOM series folders (from pydicom's CT_small and five slices of the real MR series)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
)

# ---- DICOM files ------------------------------------------------------------------------------------------------


def _dicom(raw: bytes) -> Any:
    import pydicom

    return pydicom.dcmread(io.BytesIO(raw))


def _dicom_bytes(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _patched(ds: Any, keyword: str, placeholder: Any, replacement: bytes) -> bytes:
    """``ds`` written with ``keyword`` set to a value pydicom refuses to write: written with a placeholder of the
    same length first, whose bytes are then replaced (the way a broken writer's output looks)."""
    setattr(ds, keyword, placeholder)
    raw = _dicom_bytes(ds)
    text = "\\".join(str(v) for v in placeholder) if isinstance(placeholder, list) else str(placeholder)
    old = text.encode()
    if len(old) % 2:
        old += b" "
    new = replacement.ljust(len(old))
    if raw.count(old) != 1 or len(new) != len(old):
        raise ValueError(f"cannot patch {keyword}: placeholder {old!r} found {raw.count(old)} times")
    return raw.replace(old, new)


def _write_dicom(folder: Path, name: str, data: bytes, names: str = "") -> Built:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.dcm"
    path.write_bytes(data)
    return Built(path, names)


def _ct(src: Sources, change: Callable[[Any], None]) -> bytes:
    ds = _dicom(src.ct_small)
    change(ds)
    return _dicom_bytes(ds)


_DEID_READS_HEADERS = "deid rewrites the header and copies the pixel data as it is; it never decodes them"


@mutation("dicom")
def dicom__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "zero_length", b"")


@mutation("dicom")
def dicom__text_named_dcm(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "text_named_dcm", b"patient list, not an image\n" * 20)


@mutation("dicom")
def dicom__preamble_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "preamble_only", bytes(128) + b"DICM")


@mutation("dicom")
def dicom__truncated_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "truncated_header", src.ct_small[:400])


@mutation("dicom")
def dicom__truncated_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "truncated_pixel_data", src.ct_small[: len(src.ct_small) - 9000])


@mutation("dicom")
def dicom__random_bytes_after_preamble(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "random_bytes_after_preamble", src.ct_small[:132] + rng.randbytes(3000))


@mutation(
    "dicom", valid={"deid": "a header without pixels is de-identified as a header (the skip is for truncated images)"}
)
def dicom__missing_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(ds: Any) -> None:
        del ds.PixelData
        for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                        "PhotometricInterpretation", "PixelRepresentation"):  # fmt: skip
            delattr(ds, keyword)

    return _write_dicom(folder, "missing_pixel_data", _ct(src, change))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__missing_rows(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "missing_rows", _ct(src, lambda ds: delattr(ds, "Rows")))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rows_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rows_zero", _ct(src, lambda ds: setattr(ds, "Rows", 0)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rows_larger_than_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rows_larger_than_data", _ct(src, lambda ds: setattr(ds, "Rows", 512)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__wrong_bits_allocated(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "wrong_bits_allocated", _ct(src, lambda ds: setattr(ds, "BitsAllocated", 32)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__samples_per_pixel_three(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "samples_per_pixel_three", _ct(src, lambda ds: setattr(ds, "SamplesPerPixel", 3)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__garbage_transfer_syntax(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder,
        "garbage_transfer_syntax",
        _ct(src, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.999")),
    )


@mutation("dicom")
def dicom__rle_syntax_on_native_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    # RLE Lossless claimed in the meta header, the pixels stored native (same length: the meta header stays valid)
    raw = src.ct_small.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00", 1)
    return _write_dicom(folder, "rle_syntax_on_native_pixels", raw)


@mutation("dicom")
def dicom__big_endian_claimed(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.ct_small.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00", 1)
    return _write_dicom(folder, "big_endian_claimed", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__odd_length_pixel_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "odd_length_pixel_data", _ct(src, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-3001]))
    )


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rescale_slope_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "rescale_slope_text", _patched(_dicom(src.ct_small), "RescaleSlope", "7.654321", b"abc.defg")
    )


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__rescale_slope_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "rescale_slope_nan", _patched(_dicom(src.ct_small), "RescaleSlope", "7.654321", b"NaN"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__pixel_spacing_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _patched(_dicom(src.ct_small), "PixelSpacing", ["7.654321", "7.654321"], b"abc\\def")
    return _write_dicom(folder, "pixel_spacing_text", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__pixel_spacing_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "pixel_spacing_zero", _ct(src, lambda ds: setattr(ds, "PixelSpacing", [0, 0])))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__orientation_degenerate(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "orientation_degenerate", _ct(src, lambda ds: setattr(ds, "ImageOrientationPatient", [0] * 6))
    )


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__orientation_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _patched(_dicom(src.ct_small), "ImageOrientationPatient", ["7.654321"] * 6, b"a\\b\\c\\d\\e\\f")
    return _write_dicom(folder, "orientation_text", raw)


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__number_of_frames_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "number_of_frames_text", _patched(_dicom(src.ct_small), "NumberOfFrames", "76", b"xy"))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__number_of_frames_beyond_data(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "number_of_frames_beyond_data", _ct(src, lambda ds: setattr(ds, "NumberOfFrames", 5)))


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__window_center_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "window_center_text", _patched(_dicom(src.ct_small), "WindowCenter", "7.654321", b"level")
    )


@mutation("dicom", valid={"deid": _DEID_READS_HEADERS})
def dicom__photometric_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(
        folder, "photometric_unknown", _ct(src, lambda ds: setattr(ds, "PhotometricInterpretation", "FOO"))
    )


@mutation(
    "dicom",
    valid={
        "info": "SOP Class UID is not needed to read the pixels and geometry",
        "convert": "SOP Class UID is not needed to convert",
        "predict": "SOP Class UID is not needed to predict",
    },
)
def dicom__missing_sop_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_dicom(folder, "missing_sop_class", _ct(src, lambda ds: delattr(ds, "SOPClassUID")))


# ---- DICOM series folders ---------------------------------------------------------------------------------------


def _series(folder: Path, src: Sources, change: Callable[[list[Any]], None] | None = None) -> list[Path]:
    """The five real slices in ``folder``, after ``change`` edits their datasets."""
    folder.mkdir(parents=True, exist_ok=True)
    datasets = [_dicom(raw) for raw in src.series]
    if change is not None:
        change(datasets)
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"slice_{i}.dcm"
        path.write_bytes(_dicom_bytes(ds))
        paths.append(path)
    return paths


def _series_built(folder: Path, name: str, src: Sources, change: Callable[[list[Any]], None] | None) -> Built:
    target = folder / f"series_{name}"
    _series(target, src, change)
    return Built(target)


_SKIPPED_NOT_DICOM = "files that are not DICOM are left out of a series folder (info lists them as skipped)"


def _crop_one(datasets: list[Any]) -> None:
    ds = datasets[2]
    pixels = ds.pixel_array[:32, :32]
    ds.PixelData, ds.Rows, ds.Columns = np.ascontiguousarray(pixels).tobytes(), 32, 32


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both stacks and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_size", src, _crop_one)


def _turn_one(datasets: list[Any]) -> None:
    datasets[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both stacks and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_orientation(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_orientation", src, _turn_one)


@mutation("dicom_series")
def dicom_series__one_slice_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_truncated", src, None)
    path = built.path / "slice_3.dcm"
    path.write_bytes(path.read_bytes()[:-5000])
    return Built(built.path, "slice_3.dcm")


@mutation("dicom_series")
def dicom_series__one_slice_without_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(datasets: list[Any]) -> None:
        del datasets[1].PixelData

    built = _series_built(folder, "one_slice_without_pixels", src, change)
    return Built(built.path, "slice_1.dcm")


@mutation(
    "dicom_series",
    valid={
        "info": _SKIPPED_NOT_DICOM,
        "convert": _SKIPPED_NOT_DICOM,
        "predict3d": _SKIPPED_NOT_DICOM,
    },
)
def dicom_series__one_slice_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_zero_length", src, None)
    (built.path / "slice_4.dcm").write_bytes(b"")
    return Built(built.path, "slice_4.dcm")


@mutation("dicom_series")
def dicom_series__one_slice_garbage_after_preamble(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "one_slice_garbage_after_preamble", src, None)
    path = built.path / "slice_0.dcm"
    path.write_bytes(path.read_bytes()[:132] + rng.randbytes(4000))
    return Built(built.path, "slice_0.dcm")


@mutation(
    "dicom_series",
    valid={
        "info": _SKIPPED_NOT_DICOM,
        "convert": _SKIPPED_NOT_DICOM,
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__text_file_among_slices(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _series_built(folder, "text_file_among_slices", src, None)
    (built.path / "notes.txt").write_text("scanned on the old machine\n")
    return Built(built.path, "notes.txt")


def _same_position(datasets: list[Any]) -> None:
    for ds in datasets[1:]:
        ds.ImagePositionPatient = datasets[0].ImagePositionPatient


@mutation(
    "dicom_series",
    valid={
        "info": "slices sharing a position are dropped with a warning (repeated acquisitions)",
        "convert": "slices sharing a position are dropped with a warning",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__all_slices_one_position(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "all_slices_one_position", src, _same_position)


def _no_position(datasets: list[Any]) -> None:
    del datasets[2].ImagePositionPatient


@mutation(
    "dicom_series",
    valid={
        "info": "slices without positions are stacked by InstanceNumber, with a warning",
        "convert": "slices without positions are stacked by InstanceNumber, with a warning",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__one_slice_without_position(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_without_position", src, _no_position)


@mutation("dicom_series", valid={"deid": _DEID_READS_HEADERS})
def dicom_series__one_slice_position_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_one_slice_position_text"
    paths = _series(target, src)
    ds = _dicom(paths[2].read_bytes())
    paths[2].write_bytes(_patched(ds, "ImagePositionPatient", ["7.654321"] * 3, b"a\\b\\c"))
    return Built(target, "slice_2.dcm")


@mutation("dicom_series", valid={"deid": _DEID_READS_HEADERS})
def dicom_series__one_slice_position_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_one_slice_position_nan"
    paths = _series(target, src)
    ds = _dicom(paths[2].read_bytes())
    paths[2].write_bytes(_patched(ds, "ImagePositionPatient", ["7.654321"] * 3, b"nan\\nan\\nan"))
    return Built(target, "slice_2.dcm")


def _other_uid(datasets: list[Any]) -> None:
    datasets[4].SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"


@mutation(
    "dicom_series",
    valid={
        "info": "info lists both series and asks for --series",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # predict: a folder of two stacks is predicted file by file (slow)
)
def dicom_series__one_slice_other_series(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_series", src, _other_uid)


@mutation(
    "dicom_series",
    valid={"deid": "an empty folder has nothing to de-identify (0 files)"},
    errors={"predict3d": "an input folder without images is an error, as a missing input is"},
)
def dicom_series__empty_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    target = folder / "series_empty_folder"
    target.mkdir(parents=True)
    return Built(target)


def _mixed_slope(datasets: list[Any]) -> None:
    datasets[3].RescaleSlope, datasets[3].RescaleIntercept = 2, 0


@mutation(
    "dicom_series",
    valid={
        "info": "slices with their own rescale are each rescaled (and warned about)",
        "convert": "slices with their own rescale are each rescaled (and warned about)",
        "deid": "every slice is a valid DICOM file",
    },
    commands=("info", "convert", "deid"),  # one valid series through predict3d is enough (slow)
)
def dicom_series__one_slice_other_rescale(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _series_built(folder, "one_slice_other_rescale", src, _mixed_slope)
