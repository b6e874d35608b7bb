"""The real 192-slice MR series read by medlens equals what dcm2niix writes and SimpleITK reads.

Compared in world space: dcm2niix reorients its output and ITK uses LPS+, so each reference is brought onto
medlens' voxel grid through its own affine before shape, spacing, origin, direction and every voxel are
compared.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medlens.core.image import Image


def _onto_grid(data: np.ndarray, affine: np.ndarray, target: Image) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute a reference volume onto the target's voxel axes; return the data and its new affine."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.io_orientation(target.affine)
    )
    moved = nib.orientations.apply_orientation(data, transform)
    moved_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return moved, moved_affine


def _assert_same_geometry(affine: np.ndarray, image: Image) -> None:
    ref = Image(array=image.array, affine=affine)
    np.testing.assert_allclose(ref.spacing, image.spacing, atol=1e-4)
    np.testing.assert_allclose(ref.origin, image.origin, atol=1e-3)
    np.testing.assert_allclose(ref.direction, image.direction, atol=1e-4)


@pytest.mark.integration
def test_series_matches_dcm2niix(mr_volume: Image, mr_series_dir: Path, dcm2niix: str, tmp_path: Path) -> None:
    subprocess.run(
        [dcm2niix, "-z", "n", "-b", "n", "-f", "ref", "-o", str(tmp_path), str(mr_series_dir)],
        check=True,
        capture_output=True,
    )
    ref = nib.load(tmp_path / "ref.nii")
    data = np.asanyarray(ref.dataobj)
    moved, moved_affine = _onto_grid(data, ref.affine, mr_volume)
    assert mr_volume.array.shape == (1, 256, 256, 192)
    assert moved.shape == mr_volume.spatial_shape
    _assert_same_geometry(moved_affine, mr_volume)
    np.testing.assert_array_equal(moved.astype(np.int64), mr_volume.array[0].astype(np.int64))
    assert mr_volume.warnings == []


@pytest.mark.integration
def test_series_matches_simpleitk(mr_volume: Image, mr_series_dir: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(mr_series_dir)))
    ref = reader.Execute()
    data = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    dim = ref.GetDimension()
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.asarray(ref.GetDirection()).reshape(dim, dim) * np.asarray(ref.GetSpacing())
    affine_lps[:3, 3] = ref.GetOrigin()
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps  # ITK is LPS+, medlens RAS+
    moved, moved_affine = _onto_grid(data, affine_ras, mr_volume)
    assert moved.shape == mr_volume.spatial_shape
    _assert_same_geometry(moved_affine, mr_volume)
    np.testing.assert_array_equal(moved, mr_volume.array[0])


def test_series_geometry_from_headers(mr_volume: Image, mr_series_files: list[Path]) -> None:
    """Spacing and origin follow the DICOM tags: in-plane PixelSpacing, through-plane from positions."""
    import pydicom

    first = pydicom.dcmread(mr_series_files[0], stop_before_pixels=True)
    assert mr_volume.spacing[:2] == pytest.approx([float(v) for v in first.PixelSpacing][::-1], abs=1e-6)
    assert mr_volume.spacing[2] == pytest.approx(0.9, abs=1e-3)
    assert mr_volume.meta["modality"] == "MR"
    assert mr_volume.identifiers["SeriesInstanceUID"] == first.SeriesInstanceUID
    assert "PatientID" not in mr_volume.meta
    assert mr_volume.meta["skipped_files"] == ["LICENSE: not DICOM", "README.md: not DICOM"]
