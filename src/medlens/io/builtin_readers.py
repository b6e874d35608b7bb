"""The readers medlens ships, registered by format name (imported once by the registry)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medlens.core.image import Image
from medlens.io.registry import register_reader


@register_reader("dicom", (".dcm", ".dicom", ".ima", ".dcm.gz"), "one DICOM file (slice, multi-frame, 2D picture)")
def _dicom(path: Path) -> Image:
    from medlens.io.dicom_file import read_dicom_file

    return read_dicom_file(path)


@register_reader("dicom-series", (), "a folder or list of DICOM files holding one series")
def _dicom_series(source: Path | Sequence[Path], series_uid: str | None = None) -> Image:
    from medlens.io.dicom_series import read_dicom_series

    return read_dicom_series(source, series_uid=series_uid)


@register_reader("dicomdir", (), "a DICOMDIR index and the files it references")
def _dicomdir(path: Path, series_uid: str | None = None) -> Image:
    from medlens.io.dicom_series import read_dicom_series

    return read_dicom_series(path, series_uid=series_uid)


@register_reader("nifti", (".nii", ".nii.gz"), "NIfTI-1/2 through nibabel")
def _nifti(path: Path) -> Image:
    from medlens.io.nifti import read_nifti

    return read_nifti(path)


@register_reader("itk", (".nrrd", ".nhdr", ".mha", ".mhd"), "NRRD and MetaImage through SimpleITK")
def _itk(path: Path) -> Image:
    from medlens.io.itk_formats import read_itk

    return read_itk(path)


@register_reader("raster", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"), "pictures through Pillow")
def _raster(path: Path, kind: str | None = None) -> Image:
    from medlens.io.raster import read_raster

    return read_raster(path, palette_indices=kind == "label")


@register_reader("numpy", (".npz", ".npy"), "numpy arrays (medlens archives with affine, or bare arrays)")
def _numpy(path: Path, key: str | None = None, index: int | None = None) -> Image:
    from medlens.io.raster import read_numpy

    return read_numpy(path, key=key, index=index)
