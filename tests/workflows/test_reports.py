"""``predict --dicom-sr`` end to end on real DICOM with the trained hippocampus model: a held-out Hippocampus case
written as a DICOM series, and the real MR series (cropped). The SR and the SEG pass dciodvfy with no errors, the SR's
volumes equal the predicted mask's voxel count times the voxel volume (within 1%), and the SR references the SEG's
SOP instance and the source series."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from dicom_checks import dciodvfy_errors, seg_voxels, voxel_ml_from_headers
from medlens.cli.main import main
from report_texts import numbers_not_in_report

pytestmark = pytest.mark.integration


def held_out_series(hippo_run: Path, folder: Path) -> Path:
    """The hippocampus run's test case (real MRI, never trained on), written as a DICOM MR series."""
    from medlens.data.dataset import load_dataset
    from medlens.io import read_image
    from medlens.io.dicom_series_writer import write_dicom_series

    data = load_dataset(hippo_run / "ds")
    (case,) = data.split("test")
    write_dicom_series(read_image(data.image_paths(case)[0]), folder, series_description="held-out hippocampus")
    return folder


def check_sr(out: Path, stem: str, series: Path, dciodvfy: str) -> list[float]:
    """Validity of the SR and SEG, the SR's references, and its volumes against the mask; the volumes."""
    sr_path, seg_path = out / "reports" / f"{stem}.sr.dcm", out / f"{stem}_seg.dcm"
    assert dciodvfy_errors(dciodvfy, sr_path) == [] and dciodvfy_errors(dciodvfy, seg_path) == []
    sr, seg = hd.sr.srread(sr_path), hd.seg.segread(seg_path)
    files = sorted(series.iterdir())
    source_series = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    mask = np.asarray(nib.load(str(out / f"{stem}_mask.nii.gz")).dataobj)
    voxel_ml = voxel_ml_from_headers(files)  # from the DICOM headers, not from medlens's geometry
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == ["Anterior", "Posterior"]
    volumes = []
    for number, group in enumerate(groups, start=1):
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_segment_numbers == [number]
        assert segment.source_series_for_segmentation.value == source_series
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        voxels = int((mask == number).sum())
        assert voxels > 0 and seg_voxels(seg, number) == voxels  # the SEG holds the mask
        assert volume.value == pytest.approx(voxels * voxel_ml, rel=0.01)
        volumes.append(float(volume.value))
    return volumes


def test_held_out_hippocampus_case_as_dicom(hippo_run: Path, tmp_path: Path, dciodvfy: str) -> None:
    series = held_out_series(hippo_run, tmp_path / "series")
    run = str(hippo_run / "run")
    out = tmp_path / "out"
    assert main(["-q", "predict", run, str(series), "--out", str(out), "--dicom-sr"]) == 0  # implies the report, SEG
    volumes = check_sr(out, "series", series, dciodvfy)
    report = json.loads((out / "reports" / "series.json").read_text())
    assert [f["value"] for f in report["findings"]] == pytest.approx(volumes, abs=1e-6)
    for language in ("en", "zh"):
        assert numbers_not_in_report((out / "reports" / f"series.{language}.txt").read_text(), report, language) == []
    plain = tmp_path / "plain"
    assert main(["-q", "predict", run, str(series), "--out", str(plain), "--report"]) == 0
    assert (plain / "reports" / "series.json").is_file() and not list(plain.rglob("*.dcm"))  # no SR, no SEG unasked


def test_real_mr_series(hippo_run: Path, mr_crop: Path, tmp_path: Path, dciodvfy: str) -> None:
    out = tmp_path / "out"
    run = str(hippo_run / "run")
    assert main(["-q", "predict", run, str(mr_crop), "--out", str(out), "--report", "--dicom-sr"]) == 0
    check_sr(out, "mr_crop", mr_crop, dciodvfy)
    sr = pydicom.dcmread(out / "reports" / "mr_crop.sr.dcm")
    source = pydicom.dcmread(next(mr_crop.iterdir()), stop_before_pixels=True)
    assert (sr.PatientID, sr.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)  # the patient's study


def test_dicom_sr_of_a_non_dicom_input_is_not_written(hippo_run: Path, tmp_path: Path) -> None:
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    out = tmp_path / "out"
    assert main(["-q", "predict", str(hippo_run / "run"), str(case), "--out", str(out), "--dicom-sr"]) == 0
    stem = case.name.removesuffix(".nii.gz")
    assert (out / "reports" / f"{stem}.json").is_file() and not list(out.rglob("*.dcm"))


def test_classification_sr_of_a_dicom_picture(pneumonia_run: Path, tmp_path: Path, dciodvfy: str) -> None:
    from medlens.io import read_image, write_image

    picture = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[0]
    dicom = write_image(read_image(picture), tmp_path / "xray.dcm")
    out = tmp_path / "out"
    assert main(["-q", "predict", str(pneumonia_run / "run"), str(dicom), "--out", str(out), "--dicom-sr"]) == 0
    path = out / "reports" / "xray.sr.dcm"
    assert dciodvfy_errors(dciodvfy, path) == []
    report = json.loads((out / "reports" / "xray.json").read_text())
    groups = hd.sr.srread(path).content.get_image_measurement_groups()
    (predicted,) = [g for g in groups if str(g.tracking_identifier) == "predicted class"]
    chosen = next(f for f in report["findings"] if f["kind"] == "predicted_class")
    assert predicted.finding_type.meaning == chosen["label"]
    probabilities = {f["class"]: f["probability"] for f in report["findings"] if f["kind"] == "probability"}
    read = {str(g.tracking_identifier): g.get_measurements(name=codes.DCM.Probability)[0].value for g in groups
            if g.get_measurements(name=codes.DCM.Probability)}  # fmt: skip
    assert read == pytest.approx(probabilities)
