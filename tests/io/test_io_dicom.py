"""DICOM reading on real files: single slices, compressed syntaxes, multi-frame, series splitting, DICOMDIR,
duplicates, gaps, corrupt files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut

from medlens.core.errors import InputError
from medlens.io import find_series, read_image


def _link_all(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        os.symlink(f, folder / f"{i:04d}_{f.name}")
    return folder


def test_ct_slice_in_hounsfield_units(testdata: Path) -> None:
    path = testdata / "CT_small.dcm"
    image = read_image(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)  # (rows, cols) in HU
    assert image.array.shape == (1, 128, 128, 1)
    np.testing.assert_array_equal(image.array[0, :, :, 0].T, expected)
    assert image.meta["rescale_intercept"] == float(ds.RescaleIntercept)
    assert image.meta["modality"] == "CT"
    assert image.identifiers["PatientID"] == ds.PatientID
    # LPS position of the first voxel becomes RAS by negating x and y.
    lps = [float(v) for v in ds.ImagePositionPatient]
    assert image.origin == pytest.approx([-lps[0], -lps[1], lps[2]])


@pytest.mark.parametrize("name", ["MR2_J2KR.dcm", "RG3_J2KR.dcm"])
def test_jpeg2000_decodes_like_gdcm(testdata: Path, name: str) -> None:
    """Lossless JPEG 2000 through pydicom's openjpeg plugin equals GDCM's decoding (inside SimpleITK)."""
    image = read_image(testdata / name)
    ds = pydicom.dcmread(testdata / name)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(testdata / name)))[0]  # (rows, cols), rescaled
    ours = image.array[0, :, :, 0].T if image.spatial_dims == 3 else image.array[0]
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-3)
    assert "JPEG 2000" in image.meta["transfer_syntax"]


def test_cr_without_geometry_is_2d_and_monochrome1_is_inverted(testdata: Path) -> None:
    path = testdata / "RG3_J2KR.dcm"
    image = read_image(path)
    stored = pydicom.dcmread(path).pixel_array
    assert image.array.shape == (1, 1760, 1760)
    assert image.meta["photometric_interpretation"] == "MONOCHROME2"
    assert image.meta["stored_photometric_interpretation"] == "MONOCHROME1"
    np.testing.assert_array_equal(image.array[0], 1023 - stored)  # BitsStored 10
    assert image.meta["window_center"] == 1023 - 550  # the header window mirrored with the values


def test_jpeg_baseline_ybr_becomes_rgb(data_root: Path) -> None:
    path = data_root / "dicom" / "deid_data" / "ctbrain1.dcm"
    image = read_image(path)
    assert image.channels == 3
    assert image.meta["photometric_interpretation"] == "RGB"
    # Reference: the JPEG stream decoded by Pillow's libjpeg-turbo, which also converts YCbCr to RGB.
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    reference = np.asarray(PILImage.open(io.BytesIO(frame)).convert("RGB"))  # (rows, cols, 3)
    ours = image.array[:, :, :, 0].transpose(2, 1, 0)  # (C, cols, rows) -> (rows, cols, C)
    assert ours.shape == reference.shape
    # Lossy JPEG: two decoders may round differently by a unit or two.
    assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 1.0


def test_seg_multiframe_uses_per_frame_functional_groups(testdata: Path) -> None:
    path = testdata / "liver.dcm"
    image = read_image(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    positions = [
        [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in ds.PerFrameFunctionalGroupsSequence
    ]
    z = sorted(p[2] for p in positions)
    assert image.kind == "label"
    assert image.array.shape == (1, 512, 512, 3)
    assert image.spacing == pytest.approx((0.810547, 0.810547, z[1] - z[0]), abs=1e-5)
    assert image.origin[2] == pytest.approx(z[0])
    assert set(np.unique(image.array)) <= {0, 1}
    assert image.array.sum() > 0


def test_multiframe_without_positions_warns(testdata: Path) -> None:
    image = read_image(testdata / "emri_small.dcm")
    assert image.array.shape == (1, 64, 64, 10)
    assert image.spacing[2] == pytest.approx(1.2)
    assert any("without per-frame positions" in w for w in image.warnings)


def test_rtstruct_has_no_pixels(testdata: Path) -> None:
    with pytest.raises(InputError, match=r"no pixel data|not a DICOM"):
        read_image(testdata / "rtstruct.dcm")


def test_order_does_not_come_from_file_names(mr_series_files: list[Path], tmp_path: Path) -> None:
    files = mr_series_files[40:60]
    straight = read_image(files)
    shuffled = _link_all(list(reversed(files)), tmp_path / "reversed")  # names now sort backwards
    again = read_image(shuffled)
    np.testing.assert_array_equal(straight.array, again.array)
    np.testing.assert_allclose(straight.affine, again.affine)


def test_mixed_folder_is_split_by_series_uid(mr_series_files: list[Path], testdata: Path, tmp_path: Path) -> None:
    ct_files = sorted((testdata / "dicomdirtests" / "98892001" / "CT5N").iterdir())
    mixed = _link_all(mr_series_files[:12] + ct_files, tmp_path / "mixed")
    series = find_series(mixed)
    assert sorted(s.frames for s in series) == [5, 12]
    with pytest.raises(InputError, match="holds 2 series") as err:
        read_image(mixed)
    for s in series:
        assert s.key in str(err.value)
    mr = next(s for s in series if s.modality == "MR")
    image = read_image(mixed, series_uid=mr.key)
    assert image.spatial_shape == (256, 256, 12)
    ct = read_image(mixed, series_uid=next(s.key for s in series if s.modality == "CT"))
    assert ct.spatial_shape[2] == 5


def test_one_uid_hiding_several_stacks_is_split(testdata: Path) -> None:
    """The MR 'T/S/C RF FAST PILOT' series holds one axial, one coronal and one sagittal localizer."""
    folder = testdata / "dicomdirtests" / "98892003"
    series = [s for s in find_series(folder) if s.description == "T/S/C RF FAST PILOT"]
    uids = {s.series_uid for s in series}
    uid = sorted(uids)[0]
    stacks = [s for s in series if s.series_uid == uid]
    assert sorted(s.plane for s in stacks) == ["axial", "coronal", "sagittal"]
    assert all(s.key.startswith(uid + "#") for s in stacks)
    with pytest.raises(InputError, match="holds 3 stacks"):
        read_image(folder, series_uid=uid)
    axial = next(s for s in stacks if s.plane == "axial")
    assert read_image(folder, series_uid=axial.key).orientation[2] in "SI"


def test_duplicate_position_is_dropped_and_reported(mr_series_files: list[Path], tmp_path: Path) -> None:
    files = mr_series_files[:10]
    folder = _link_all([*files, files[4]], tmp_path / "dup")
    image = read_image(folder)
    assert image.spatial_shape[2] == 10
    assert any("share a position" in w for w in image.warnings)
    np.testing.assert_array_equal(image.array, read_image(files).array)


def test_gap_is_reported(mr_series_files: list[Path], tmp_path: Path) -> None:
    files = mr_series_files[:10]
    folder = _link_all(files[:5] + files[6:], tmp_path / "gap")
    image = read_image(folder)
    assert image.spatial_shape[2] == 9
    assert any("not uniform" in w and "gap" in w for w in image.warnings)
    assert image.spacing[2] == pytest.approx(0.9 * 9 / 8, abs=1e-3)  # mean spacing over the gap


def test_dicomdir_lists_and_reads_series(testdata: Path) -> None:
    dicomdir = testdata / "dicomdirtests" / "DICOMDIR"
    series = find_series(dicomdir)
    ct = next(s for s in series if s.description == "Routine Brain")
    assert ct.frames == 4
    with pytest.raises(InputError, match="choose one"):
        read_image(dicomdir)
    via_dicomdir = read_image(dicomdir, series_uid=ct.key)
    direct = read_image(list(ct.files))
    assert via_dicomdir.spatial_shape == (ct.columns, ct.rows, 4)
    np.testing.assert_array_equal(via_dicomdir.array, direct.array)


def test_truncated_file_is_an_input_error(testdata: Path, mr_series_files: list[Path], tmp_path: Path) -> None:
    data = (testdata / "CT_small.dcm").read_bytes()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_image(broken)
    assert "broken.dcm" in str(err.value)

    folder = _link_all(mr_series_files[:3], tmp_path / "series")
    whole = mr_series_files[3].read_bytes()
    (folder / "zz_cut_in_header.dcm").write_bytes(whole[:600])  # preamble and part of the header
    with pytest.raises(InputError, match="zz_cut_in_header"):
        read_image(folder)
    (folder / "zz_cut_in_header.dcm").unlink()
    (folder / "zz_cut_in_pixels.dcm").write_bytes(whole[: len(whole) - 5000])
    with pytest.raises(InputError, match="zz_cut_in_pixels"):
        read_image(folder)


def test_gzipped_dicom(data_root: Path) -> None:
    image = read_image(data_root / "nifti" / "siemens_dwi_1000.dcm.gz")
    assert image.meta["modality"] == "MR"
    assert image.spatial_dims == 3
