"""DICOM SEG on the real 192-slice MR series: valid (dciodvfy), readable (highdicom), frames on the right slices."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom

from medlens.io import find_series, read_image
from medlens.io.dicom_geometry import LPS_TO_RAS
from medlens.io.dicom_seg import write_dicom_seg


def test_dicom_seg_on_real_series(mr_series_dir: Path, tmp_path: Path, dciodvfy: str) -> None:
    mr_series = mr_series_dir
    image = read_image(mr_series)
    files = list(find_series(mr_series)[0].files)
    labels = np.zeros(image.spatial_shape, np.uint8)  # (I, J, K)
    labels[100:140, 90:150, 60:64] = 1  # a block on slices 60..63
    labels[60:80, 120:130, 120] = 2  # a second class on slice 120 only
    out = write_dicom_seg(labels, image, files, tmp_path / "seg.dcm", ["background", "lesion", "cyst"])

    result = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors

    seg = hd.seg.segread(out)
    assert seg.number_of_segments == 2 and seg.SeriesInstanceUID != pydicom.dcmread(files[0]).SeriesInstanceUID
    uid_of = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        position = LPS_TO_RAS @ np.array([float(v) for v in ds.ImagePositionPatient] + [1.0])
        uid_of[round(float((np.linalg.inv(image.affine) @ position)[2]))] = ds.SOPInstanceUID
    expected = {1: {uid_of[k] for k in range(60, 64)}, 2: {uid_of[120]}}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert source in expected[segment]
    assert seg.NumberOfFrames == 5
    # pixels read back through highdicom match the mask on the referenced slice
    volume = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[uid_of[61], uid_of[120]], combine_segments=True
    )  # (2, rows, columns)
    assert np.array_equal(volume[0], labels[:, :, 61].T)
    assert np.array_equal(volume[1], labels[:, :, 120].T)
