"""NIfTI, NRRD/MHA, pictures and npz on real files; the writers; the reader registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io import list_readers, list_writers, read_image, write_image
from medlens.io.windowing import CT_WINDOWS


def test_registry_names_every_format() -> None:
    assert {"dicom", "dicom-series", "dicomdir", "nifti", "itk", "raster", "numpy"} <= set(list_readers())
    assert {".nii.gz", ".png", ".dcm", ".nrrd", ".mha", ".npz"} <= set(list_writers())


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "functional.nii"])
def test_nifti_matches_nibabel(data_root: Path, name: str) -> None:
    path = data_root / "nifti" / name
    ref = nib.load(path)
    image = read_image(path)
    data = ref.get_fdata()
    expected = data[None] if data.ndim == 3 else np.moveaxis(data, 3, 0)  # channel first
    np.testing.assert_allclose(image.array, expected)
    np.testing.assert_allclose(image.affine, ref.affine)
    assert image.array.dtype.isnative


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_formats_written_by_simpleitk(data_root: Path, tmp_path: Path, suffix: str) -> None:
    """SimpleITK writes the NIfTI sample as NRRD/MHA (LPS); medlens reads it back in RAS equal to nibabel."""
    source = data_root / "nifti" / "anatomical.nii"
    other = tmp_path / f"anatomical{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(source)), str(other))
    image = read_image(other)
    ref = nib.load(source)
    np.testing.assert_array_equal(image.array[0], np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(image.affine, ref.affine, atol=1e-5)


def test_jpeg_picture_is_channel_first(data_root: Path) -> None:
    path = data_root / "BCCD" / "JPEGImages" / "BloodImage_00000.jpg"
    image = read_image(path)
    with PILImage.open(path) as pic:
        expected = np.asarray(pic.convert("RGB")).transpose(2, 0, 1)  # (C, H, W)
    assert image.array.shape == (3, 480, 640)
    np.testing.assert_array_equal(image.array, expected)
    assert image.spatial_dims == 2


def test_npz_item_by_key_and_index(data_root: Path) -> None:
    path = data_root / "medmnist" / "pneumoniamnist.npz"
    with np.load(path) as archive:
        expected = archive["val_images"][7]
    image = read_image(path, key="val_images", index=7)
    np.testing.assert_array_equal(image.array[0], expected)
    with pytest.raises(InputError, match="several arrays"):
        read_image(path)


def test_unknown_and_missing_inputs(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(text)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.nii.gz")
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match=r"fake.nii.gz"):
        read_image(fake)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".npz"])
def test_volume_round_trips(mr_volume: Image, tmp_path: Path, suffix: str) -> None:
    small = Image(array=mr_volume.array[:, ::4, ::4, ::8], affine=mr_volume.affine.copy())
    out = write_image(small, tmp_path / f"volume{suffix}")
    back = read_image(out)
    np.testing.assert_array_equal(back.array, small.array)
    np.testing.assert_allclose(back.affine, small.affine, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [f"volume{suffix}"]  # no temporary left behind


def test_series_to_nifti_keeps_world_geometry(mr_volume: Image, tmp_path: Path) -> None:
    out = write_image(mr_volume, tmp_path / "mr.nii.gz")
    ref = nib.load(out)
    np.testing.assert_allclose(ref.affine, mr_volume.affine, atol=1e-5)
    assert int(ref.header["sform_code"]) == 1
    np.testing.assert_array_equal(np.asanyarray(ref.dataobj), mr_volume.array[0])


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    flat = Image(array=np.zeros((1, 8, 8), np.uint8), affine=np.eye(3))
    with pytest.raises(InputError, match="3D"):
        write_image(flat, tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="unknown output format"):
        write_image(flat, tmp_path / "flat.xyz")
    assert list(tmp_path.iterdir()) == []


def test_png_ct_window_preset(testdata: Path, tmp_path: Path) -> None:
    image = read_image(testdata / "CT_small.dcm")
    out = write_image(image, tmp_path / "ct.png", window="bone")
    pixels = np.asarray(PILImage.open(out))
    center, width = CT_WINDOWS["bone"]
    hu = image.array[0, :, :, 0].T.astype(float)  # (rows, cols)
    expected = np.clip(np.round((hu - (center - width / 2)) / width * 255), 0, 255)
    np.testing.assert_array_equal(pixels, expected.astype(np.uint8))


def test_png_of_2d_rgb_is_unchanged(data_root: Path, tmp_path: Path) -> None:
    image = read_image(data_root / "dicom" / "deid_data" / "RGB_IMAGE.dcm")
    out = write_image(image, tmp_path / "us.png")
    np.testing.assert_array_equal(np.asarray(PILImage.open(out)), image.array.transpose(1, 2, 0))


def test_secondary_capture_joins_the_study(mr_volume: Image, mr_series_files: list[Path], tmp_path: Path) -> None:
    out = write_image(mr_volume, tmp_path / "overlay.dcm", window="mr", reference=mr_series_files[0])
    sc = pydicom.dcmread(out)
    source = pydicom.dcmread(mr_series_files[0], stop_before_pixels=True)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert sc.pixel_array.shape == (256, 256)  # the middle sagittal slice, rows first


@pytest.mark.integration
def test_secondary_capture_passes_dciodvfy(data_root: Path, tmp_path: Path, dciodvfy: str) -> None:
    image = read_image(data_root / "dicom" / "deid_data" / "RGB_IMAGE.dcm")
    out = write_image(image, tmp_path / "rgb_sc.dcm")
    result = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
    assert pydicom.dcmread(out).pixel_array.shape == (768, 1024, 3)


@pytest.mark.integration
def test_secondary_capture_read_by_dcmtk(mr_volume: Image, mr_series_files: list[Path], tmp_path: Path, dcmdump: str):
    """DCMTK's dcmdump, an independent parser, reads medlens's Secondary Capture and sees its study and size."""
    out = write_image(mr_volume, tmp_path / "overlay.dcm", window="mr", reference=mr_series_files[0])
    result = subprocess.run([dcmdump, "-q", "+P", "0020,000d", "+P", "0028,0010", "+P", "0008,0016", str(out)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    source = pydicom.dcmread(mr_series_files[0], stop_before_pixels=True)
    assert f"[{source.StudyInstanceUID}]" in result.stdout
    assert "=SecondaryCaptureImageStorage" in result.stdout and "US 256" in result.stdout
