"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, whose affine is already voxel to RAS+ millimetres."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.core.outputs import atomic_file

NIFTI_INTENT_LABEL = 1002

# nibabel reports the header problems it repairs ("sizeof_hdr should be 348") through a stderr handler of its own;
# without it they go through the application's logging like every other library's, and stderr keeps only errors.
for _handler in list(nib.imageglobals.logger.handlers):
    if type(_handler) is logging.StreamHandler:
        nib.imageglobals.logger.removeHandler(_handler)


def read_nifti(path: Path) -> Image:
    """Read a NIfTI file: 3D ``(X, Y, Z)`` becomes ``(1, X, Y, Z)``, 4D ``(X, Y, Z, T)`` ``(T, X, Y, Z)``.

    The scaling in ``scl_slope``/``scl_inter`` is applied; a label intent (``NIFTI_INTENT_LABEL``) marks
    the image as a label map.
    """
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 images subclass NIfTI-1 images
            raise InputError(path, f"not a NIfTI file ({type(img).__name__})")
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter when set
        affine = np.asarray(img.affine, dtype=float)
    except (
        OSError,
        EOFError,
        ValueError,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    ) as exc:
        raise InputError(path, f"unreadable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if np.iscomplexobj(data):
        raise InputError(path, f"complex voxels ({data.dtype}) are not intensities; save the magnitude")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        zooms = [round(float(z), 6) for z in np.linalg.norm(affine[:3, :3], axis=0)]
        raise InputError(path, f"no usable voxel geometry: the sform/qform affine is not finite and invertible "
                         f"(voxel sizes {zooms})")  # fmt: skip
    if data.size == 0:
        raise InputError(path, f"no voxels (shape {list(data.shape)})")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))  # torch and numba want native byte order
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim == 3:
        array = data[None]  # (1, X, Y, Z)
    elif data.ndim == 4:
        array = np.moveaxis(data, 3, 0)  # (T, X, Y, Z)
    else:
        raise InputError(path, f"{data.ndim}D NIfTI is not supported (3D or 4D only), shape {data.shape}")
    header = img.header
    intent = int(header["intent_code"])
    descrip = header["descrip"].tobytes().rstrip(b"\0").decode("latin-1")
    meta = {"source_format": "nifti", "description": descrip}
    xyz_units, _ = header.get_xyzt_units()
    warnings = []
    if xyz_units not in ("mm", "unknown"):
        warnings.append(f"spatial units are {xyz_units}, not mm")
    return Image(
        array=array,
        affine=affine,
        kind="label" if intent == NIFTI_INTENT_LABEL else "scalar",
        meta=meta,
        warnings=warnings,
    )


def write_nifti(image: Image, path: Path) -> Path:
    """Write a 3D image as NIfTI-1 (gzipped when the name ends in ``.gz``), atomically.

    One channel is written as ``(X, Y, Z)``, several as ``(X, Y, Z, C)``.
    """
    if image.spatial_dims != 3:
        raise InputError(path, f"NIfTI output needs a 3D image, got {image.spatial_dims}D")
    data = image.array[0] if image.channels == 1 else np.moveaxis(image.array, 0, 3)  # (X, Y, Z[, C])
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    nii = nib.Nifti1Image(np.asarray(data), image.affine)
    nii.header.set_xyzt_units("mm", "sec")
    nii.set_qform(image.affine, code=1)
    nii.set_sform(image.affine, code=1)
    if image.kind == "label":
        nii.header.set_intent(NIFTI_INTENT_LABEL)
    payload = nii.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    with atomic_file(path, "wb") as handle:
        handle.write(payload)  # type: ignore[attr-defined]
    return path
