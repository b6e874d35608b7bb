"""DICOM SR (Comprehensive 3D SR, TID 1500) of findings on real DICOM: valid (dciodvfy, no errors), readable by
highdicom, volumes referencing the SEG's segments and the source series, qualitative findings, boxes as SCOORDs."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from dicom_checks import dciodvfy_errors, seg_voxels, voxel_ml_from_headers
from medlens.core.errors import InputError
from medlens.io import find_series, read_image
from medlens.io.dicom_seg import write_dicom_seg
from medlens.io.dicom_sr import dicom_sources, write_dicom_sr
from medlens.tasks import get_task
from medlens.tasks.segmentation.prediction import SegmentationPrediction


def test_volumes_reference_the_seg_and_the_series(mr_crop: Path, tmp_path: Path, dciodvfy: str) -> None:
    image = read_image(mr_crop)
    files = list(find_series(mr_crop)[0].files)
    labels = np.zeros(image.spatial_shape, np.uint8)  # (I, J, K)
    labels[5:30, 10:30, 3:15] = 1
    labels[30:45, 5:15, 12:20] = 2
    names = ["background", "left", "right"]
    seg_path = write_dicom_seg(labels, image, files, tmp_path / "seg.dcm", names)
    label_image = image.__class__(labels[None], image.affine, "label")
    prediction = SegmentationPrediction(model="m", source=str(mr_crop), labels=label_image, class_names=names,
                                        sizes={}, image=image)  # fmt: skip
    findings = get_task("segmentation").findings(prediction, None)  # type: ignore[arg-type]
    sr_path = write_dicom_sr(findings, files, tmp_path / "sr.dcm", segmentation=seg_path, algorithm="hippo")
    assert dciodvfy_errors(dciodvfy, sr_path) == [] and dciodvfy_errors(dciodvfy, seg_path) == []

    sr = hd.sr.srread(sr_path)
    seg = hd.seg.segread(seg_path)
    series = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == ["left", "right"]
    voxel_ml = voxel_ml_from_headers(files)
    for number, group in enumerate(groups, start=1):
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        assert volume.unit.value == "ml"
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_segment_numbers == [number]
        assert segment.source_series_for_segmentation.value == series
        voxels = seg_voxels(seg, number)
        assert voxels == int((labels == number).sum()) > 0
        assert volume.value == pytest.approx(voxels * voxel_ml, rel=0.01)  # SR volume = SEG voxels x voxel volume
    evidence = {item.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for item in r.ReferencedSOPSequence}  # fmt: skip
    assert seg.SOPInstanceUID in evidence and len(evidence) == len(files) + 1


def test_classification_and_value_findings(real_data, tmp_path: Path, dciodvfy: str) -> None:  # type: ignore[no-untyped-def]
    picture = real_data("dicom/pydicom_testdata/CT_small.dcm")
    findings = [
        {"kind": "probability", "class": "normal", "probability": 0.2174},
        {"kind": "probability", "class": "pneumonia", "probability": 0.7826},
        {"kind": "predicted_class", "label": "pneumonia", "threshold": 0.7333, "positive_class": "pneumonia"},
        {"kind": "referral", "refer": True},
        {"kind": "value", "name": "brain volume", "value": 1523.4568, "unit": "mL"},
        {"kind": "value", "name": "MMSE", "value": 27.5, "unit": "points"},
    ]
    path = write_dicom_sr(findings, dicom_sources(picture), tmp_path / "sr.dcm")
    assert dciodvfy_errors(dciodvfy, path) == []
    sr = hd.sr.srread(path)
    groups = sr.content.get_image_measurement_groups()
    probability = {str(g.finding_type.meaning): g.get_measurements(name=codes.DCM.Probability)[0].value
                   for g in groups if g.get_measurements(name=codes.DCM.Probability)}  # fmt: skip
    assert probability == {"normal": pytest.approx(0.2174), "pneumonia": pytest.approx(0.7826)}
    (predicted,) = [g for g in groups if str(g.tracking_identifier) == "predicted class"]
    assert predicted.finding_type.meaning == "pneumonia"
    evaluations = [(e.name.meaning, e.value.meaning) for e in predicted.get_qualitative_evaluations()]
    assert evaluations == [("Referral advised", "Yes")]
    values = {str(g.finding_type.meaning): g.get_measurements()[0] for g in groups if str(g.tracking_identifier) in
              ("brain volume", "MMSE")}  # fmt: skip
    assert values["brain volume"].value == pytest.approx(1523.4568) and values["brain volume"].unit.value == "ml"
    assert values["MMSE"].unit.value == "{points}"  # a unit without a UCUM code: an annotation
    source = pydicom.dcmread(picture, stop_before_pixels=True)
    assert sr.PatientID == source.PatientID and sr.StudyInstanceUID == source.StudyInstanceUID


def test_boxes_are_planar_rois_on_the_source_image(real_data, tmp_path: Path, dciodvfy: str) -> None:  # type: ignore[no-untyped-def]
    picture = real_data("dicom/pydicom_testdata/CT_small.dcm")
    findings = [
        {"kind": "box", "class": "nodule", "score": 0.91, "box": [10.5, 20.0, 30.25, 44.0], "width": 13.5,
         "height": 16.4, "unit": "mm"},
        {"kind": "box", "class": "cyst", "score": 0.42, "box": [40.0, 41.0, 50.0, 52.0], "width": 10.0,
         "height": 11.0, "unit": "px"},
        {"kind": "box_count", "class": "nodule", "count": 1, "score_threshold": 0.4},
    ]  # fmt: skip
    path = write_dicom_sr(findings, [picture], tmp_path / "sr.dcm")
    assert dciodvfy_errors(dciodvfy, path) == []
    groups = hd.sr.srread(path).content.get_planar_roi_measurement_groups()
    assert [str(g.finding_type.meaning) for g in groups] == ["nodule", "cyst"]
    source = pydicom.dcmread(picture, stop_before_pixels=True)
    first = groups[0]
    assert np.allclose(first.roi.value, [[10.5, 20.0], [30.25, 20.0], [30.25, 44.0], [10.5, 44.0], [10.5, 20.0]])
    assert first.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert first.get_measurements(name=codes.SCT.Width)[0].value == pytest.approx(13.5)
    assert not groups[1].get_measurements(name=codes.SCT.Width)  # sizes in pixels are not mm measurements


def test_what_an_sr_cannot_carry(mr_crop: Path, hippocampus_root: Path, tmp_path: Path) -> None:
    assert dicom_sources(next((hippocampus_root / "imagesTr").glob("*.nii.gz"))) == []  # NIfTI: not DICOM
    files = list(find_series(mr_crop)[0].files)
    assert dicom_sources(mr_crop) == [Path(p) for p in files]
    volume = {"kind": "volume", "structure": "a", "segment": 1, "value": 1.0, "unit": "mL"}
    with pytest.raises(InputError, match="DICOM SEG"):
        write_dicom_sr([volume], files, tmp_path / "sr.dcm")
    box = {"kind": "box", "class": "a", "score": 0.5, "box": [0, 0, 1, 1], "width": 1, "height": 1, "unit": "px"}
    with pytest.raises(InputError, match="one picture"):
        write_dicom_sr([box], files, tmp_path / "sr.dcm")
    assert not (tmp_path / "sr.dcm").exists()
