"""DICOM input gets a DICOM explanation a viewer shows: a Secondary Capture of the overlay in the source's study,
listing the source images, that passes ``dciodvfy`` and reads back with pydicom and highdicom. On a real DICOM
picture (a CT slice, explained by the shared ``pneumonia_run``) and a real DICOM series (an MR crop, explained by
the shared ``hippo_run``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from medlens.cli.main import main


def check_capture(capture: Path, sources: list[Path], overlay: Path, dciodvfy: str) -> None:
    """The capture is valid (no dciodvfy error), joins the sources' patient and study in a new series, lists every
    source image, and holds the overlay's pixels."""
    import highdicom as hd
    import pydicom
    from PIL import Image as PILImage

    result = subprocess.run([dciodvfy, str(capture)], capture_output=True, text=True, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors
    sc = pydicom.dcmread(capture)
    first = pydicom.dcmread(sources[0], stop_before_pixels=True)
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert (sc.StudyInstanceUID, sc.PatientID) == (first.StudyInstanceUID, first.PatientID)
    assert sc.SeriesInstanceUID != first.SeriesInstanceUID and sc.Modality == "OT"  # a capture: other
    referenced = {(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in sc.SourceImageSequence}
    wanted = {(d.SOPClassUID, d.SOPInstanceUID) for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in sources)}
    assert referenced == wanted
    assert "explanation" in sc.SeriesDescription and sc.BurnedInAnnotation == "YES"
    with PILImage.open(overlay) as png:
        assert np.array_equal(sc.pixel_array, np.asarray(png))  # the overlay a viewer shows, pixel for pixel
    back = hd.imread(capture)  # highdicom reads it back as an image of the same pixels
    assert back.SOPClassUID == sc.SOPClassUID and np.array_equal(back.get_frame(1), sc.pixel_array)


def test_a_dicom_picture_gets_a_secondary_capture(
    pneumonia_run: Path, data_root: Path, tmp_path: Path, dciodvfy: str
) -> None:
    slice_ = data_root / "dicom" / "pydicom_testdata" / "CT_small.dcm"
    out = tmp_path / "explained"
    run = str(pneumonia_run / "run")
    assert main(["-q", "explain", run, str(slice_), "--out", str(out), "--method", "gradcam"]) == 0
    info = json.loads((out / "CT_small_gradcam.json").read_text())
    assert info["files"]["dicom"] == "CT_small_gradcam.dcm"
    check_capture(out / "CT_small_gradcam.dcm", [slice_], out / info["files"]["overlay"], dciodvfy)
    import pydicom

    assert list(pydicom.dcmread(out / "CT_small_gradcam.dcm").PatientOrientation) == ["L", "P"]  # one axial plane


def test_a_dicom_series_gets_a_secondary_capture(hippo_run: Path, mr_crop: Path, tmp_path: Path, dciodvfy: str) -> None:
    """A 24-slice real MR series explained by the hippocampus model: the map as NIfTI in the series' geometry, and
    the three planes through the peak as one capture referencing all 24 slices."""
    import nibabel as nib

    from medlens.io import read_image

    out = tmp_path / "explained"
    assert main(["-q", "explain", str(hippo_run / "run"), str(mr_crop), "--out", str(out), "--method", "eigencam"]) == 0
    (capture,) = out.glob("*.dcm")
    info = json.loads(capture.with_suffix(".json").read_text())
    sources = sorted(mr_crop.iterdir())
    assert len(sources) == 24
    check_capture(capture, sources, out / info["files"]["overlay"], dciodvfy)
    import pydicom

    assert not pydicom.dcmread(capture).PatientOrientation  # three planes side by side: no one orientation
    heat = nib.load(str(out / info["files"]["map"]))
    series = read_image(mr_crop)
    assert heat.shape[:3] == series.spatial_shape and np.allclose(heat.affine, series.affine, atol=1e-4)
