"""Mutations of NIfTI volumes and masks (from the real Hippocampus cases)."""

from __future__ import annotations

import gzip
import math
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
)

# ---- NIfTI volumes ----------------------------------------------------------------------------------------------
# From the real Hippocampus case 4 (36x52x38 float32, 1 mm); the header offsets are NIfTI-1's (little endian).

_DIM, _DATATYPE, _PIXDIM, _VOX_OFFSET, _SCL_SLOPE, _SFORM_CODE, _SROW_X = 40, 70, 76, 108, 112, 254, 280


def _nifti_raw(src: Sources) -> bytearray:
    return bytearray(gzip.decompress(src.hippocampus[4][1]))


def _nifti_image(src: Sources) -> Any:
    import nibabel as nib

    return nib.Nifti1Image.from_bytes(bytes(_nifti_raw(src)))


def _write_nifti(folder: Path, name: str, payload: bytes, compress: bool = True) -> Built:
    path = folder / f"bad_{name}.nii.gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return Built(path)


def _header_patched(src: Sources, fmt: str, offset: int, *values: float) -> bytes:
    raw = _nifti_raw(src)
    struct.pack_into(fmt, raw, offset, *values)
    return bytes(raw)


def _voxels(src: Sources, change: Callable[[np.ndarray], np.ndarray]) -> bytes:
    import nibabel as nib

    image = _nifti_image(src)
    data = change(np.asarray(image.dataobj, dtype=np.float32).copy())
    out = nib.Nifti1Image(data, image.affine, image.header)
    out.header.set_data_dtype(data.dtype)
    return bytes(out.to_bytes())


_SHOWN_AS_STORED = "info shows what the file holds (its value range reads nan or inf)"
_COPIED_AS_STORED = "convert copies the values the file holds"
_NONFINITE_REFUSED = "a volume with NaN or infinite voxels is refused (predict --nonfinite clean replaces them)"


@mutation("nifti")
def nifti__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "zero_length", b"", compress=False)


@mutation("nifti", commands=("info", "convert", "predict3d", "import-msd", "import-pairs"))
def nifti__truncated_gzip(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.hippocampus[4][1]
    return _write_nifti(folder, "truncated_gzip", raw[: len(raw) // 2], compress=False)


@mutation("nifti")
def nifti__not_gzip(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "not_gzip", b"this is a list of volumes, not a volume\n" * 10, compress=False)


@mutation("nifti")
def nifti__gzip_of_garbage(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "gzip_of_garbage", rng.randbytes(4000))


@mutation("nifti")
def nifti__header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "header_only", bytes(_nifti_raw(src)[:352]))


@mutation("nifti")
def nifti__voxels_cut_short(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = _nifti_raw(src)
    return _write_nifti(folder, "voxels_cut_short", bytes(raw[: 352 + (len(raw) - 352) // 2]))


@mutation(
    "nifti",
    valid={
        c: "nibabel repairs a wrong sizeof_hdr (and says so in the log)"
        for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")
    },
)
def nifti__sizeof_hdr_wrong(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "sizeof_hdr_wrong", _header_patched(src, "<i", 0, 123))


@mutation("nifti")
def nifti__dim0_nine(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim0_nine", _header_patched(src, "<h", _DIM, 9))


@mutation("nifti")
def nifti__dim_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim_zero", _header_patched(src, "<h", _DIM + 2, 0))


@mutation("nifti")
def nifti__dim_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "dim_negative", _header_patched(src, "<h", _DIM + 2, -4))


def _qform_only(src: Sources, *pixdim: float) -> bytes:
    raw = bytearray(_header_patched(src, "<h", _SFORM_CODE, 0))
    struct.pack_into("<3f", raw, _PIXDIM + 4, *pixdim)
    return bytes(raw)


@mutation(
    "nifti",
    valid={
        c: "nibabel repairs zero voxel sizes to 1 mm (and says so in the log); the file has no sform to contradict it"
        for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")
    },
)
def nifti__pixdim_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "pixdim_zero", _qform_only(src, 0.0, 0.0, 0.0))


@mutation("nifti")
def nifti__pixdim_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "pixdim_nan", _qform_only(src, math.nan, 1.0, 1.0))


@mutation("nifti")
def nifti__sform_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "sform_nan", _header_patched(src, "<f", _SROW_X, math.nan))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__nan_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data.flat[np.random.default_rng(rng.randrange(1 << 30)).choice(data.size, 50, replace=False)] = np.nan
        return data

    return _write_nifti(folder, "nan_voxels", _voxels(src, change))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__inf_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data[10, 10, 10], data[20, 20, 20] = np.inf, -np.inf
        return data

    return _write_nifti(folder, "inf_voxels", _voxels(src, change))


@mutation("nifti", valid={"info": _SHOWN_AS_STORED, "convert": _COPIED_AS_STORED})
def nifti__all_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "all_nan", _voxels(src, lambda data: np.full_like(data, np.nan)))


_NO_SCALING = "a scale of 0 or one that is not finite means no scaling (NIfTI; nibabel reads the stored values)"


@mutation(
    "nifti",
    valid={c: _NO_SCALING for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")},
    commands=("info", "convert", "predict3d", "import-msd", "import-pairs"),
)
def nifti__scale_zero(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "scale_zero", _header_patched(src, "<f", _SCL_SLOPE, 0.0))


@mutation("nifti", valid={c: _NO_SCALING for c in ("info", "convert", "predict3d", "import-msd", "import-pairs")})
def nifti__scale_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "scale_infinite", _header_patched(src, "<f", _SCL_SLOPE, math.inf))


@mutation("nifti")
def nifti__datatype_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "datatype_unknown", _header_patched(src, "<h", _DATATYPE, 1234))


@mutation("nifti")
def nifti__vox_offset_beyond_end(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "vox_offset_beyond_end", _header_patched(src, "<f", _VOX_OFFSET, 1e6))


@mutation("nifti")
def nifti__five_dimensions(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "five_dimensions", _voxels(src, lambda data: np.stack([data, data], -1)[..., None, :]))


@mutation(
    "nifti",
    valid={"info": "a 4D volume is read as channels", "convert": "a 4D volume is converted as channels"},
)
def nifti__two_volumes(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "two_volumes", _voxels(src, lambda data: np.stack([data, data], -1)))


@mutation("nifti")
def nifti__complex_voxels(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_nifti(folder, "complex_voxels", _voxels(src, lambda data: data.astype(np.complex64) * (1 + 1j)))


# Masks (labels) of one case: image and mask must agree, values must be the declared classes.


def _label(src: Sources, change: Callable[[np.ndarray], np.ndarray], affine_shift: float = 0.0) -> bytes:
    import nibabel as nib

    label = nib.Nifti1Image.from_bytes(gzip.decompress(src.hippocampus[4][2]))
    data = change(np.asarray(label.dataobj).copy())
    affine = label.affine.copy()
    affine[0, 3] += affine_shift
    out = nib.Nifti1Image(data, affine)
    out.header.set_data_dtype(data.dtype)
    return gzip.compress(bytes(out.to_bytes()), mtime=0)


def _write_label(folder: Path, name: str, payload: bytes) -> Built:
    path = folder / f"bad_{name}.nii.gz"
    path.write_bytes(payload)
    return Built(path)


@mutation("nifti_label")
def nifti_label__value_outside_classes(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        data[data == 2] = 7
        return data

    return _write_label(folder, "value_outside_classes", _label(src, change))


@mutation("nifti_label")
def nifti_label__negative_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "negative_value", _label(src, lambda data: data.astype(np.int16) - 1))


@mutation("nifti_label")
def nifti_label__fractional_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "fractional_value", _label(src, lambda data: data.astype(np.float32) * 0.5))


@mutation("nifti_label")
def nifti_label__nan_value(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(data: np.ndarray) -> np.ndarray:
        out = data.astype(np.float32)
        out[5, 5, 5] = np.nan
        return out

    return _write_label(folder, "nan_value", _label(src, change))


@mutation("nifti_label")
def nifti_label__other_shape(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "other_shape", _label(src, lambda data: np.ascontiguousarray(data[:-3])))


@mutation("nifti_label")
def nifti_label__other_origin(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "other_origin", _label(src, lambda data: data, affine_shift=5.0))


@mutation("nifti_label")
def nifti_label__two_channels(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _write_label(folder, "two_channels", _label(src, lambda data: np.stack([data, data], -1)))


@mutation("nifti_label")
def nifti_label__truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.hippocampus[4][2]
    return _write_label(folder, "truncated", raw[: len(raw) // 2])
