"""Detection findings: boxes at the operating score with sizes in mm when the picture's pixel spacing is known (else
in pixels, and the finding says so), and the count per class; on real BCCD boxes and real DICOM pictures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from medlens.io import read_image
from medlens.tasks import get_task
from medlens.tasks.detection.metrics import ImageBoxes
from medlens.tasks.detection.prediction import DetectionPrediction, pixel_spacing

NAMES = ["Platelets", "RBC", "WBC"]


def _real_boxes(bccd_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The boxes and labels of the first BCCD annotation."""
    root = ET.parse(sorted((bccd_root / "Annotations").glob("*.xml"))[0]).getroot()
    boxes, labels = [], []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        boxes.append([float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])  # type: ignore[union-attr,arg-type]
        labels.append(NAMES.index(obj.find("name").text))  # type: ignore[union-attr,arg-type]
    return np.array(boxes), np.array(labels)


def _prediction(bccd_root: Path, spacing: tuple[float, float] | None) -> DetectionPrediction:
    boxes, labels = _real_boxes(bccd_root)
    scores = np.linspace(0.95, 0.05, len(labels))  # the last boxes fall below the operating score
    return DetectionPrediction(
        model="m", source="x", candidates=ImageBoxes(boxes, labels, scores), score_threshold=0.3, class_names=NAMES,
        image_size=(480, 640), pixels=np.zeros((3, 480, 640), np.uint8), pixel_spacing_mm=spacing,
    )  # fmt: skip


@pytest.mark.parametrize("spacing", [None, (0.5, 0.25)])
def test_boxes_with_sizes_and_counts(bccd_root: Path, spacing: tuple[float, float] | None) -> None:
    prediction = _prediction(bccd_root, spacing)
    findings = get_task("detection").findings(prediction, None)  # type: ignore[arg-type]
    boxes = [f for f in findings if f["kind"] == "box"]
    kept = prediction.boxes
    assert len(boxes) == len(kept) and 0 < len(kept) < len(prediction.candidates.labels)
    assert [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    row_mm, col_mm = spacing or (1.0, 1.0)
    for box in boxes:
        x0, y0, x1, y1 = box["box"]
        assert box["unit"] == ("mm" if spacing else "px") and box["score"] >= 0.3
        assert box["width"] == pytest.approx((x1 - x0) * col_mm, abs=0.006)
        assert box["height"] == pytest.approx((y1 - y0) * row_mm, abs=0.006)
    counts = {f["class"]: f["count"] for f in findings if f["kind"] == "box_count"}
    assert counts == {n: sum(b["label"] == n for b in kept) for n in NAMES}


def test_pixel_spacing_is_known_only_where_the_file_records_it(real_data, bccd_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from medlens.io import write_image

    jpeg = read_image(sorted((bccd_root / "JPEGImages").glob("*.jpg"))[0])
    assert pixel_spacing(jpeg) is None
    write_image(jpeg, tmp_path / "capture.dcm")  # a secondary capture: no PixelSpacing
    assert pixel_spacing(read_image(tmp_path / "capture.dcm")) is None
    mr = read_image(real_data("dicom/pydicom_testdata/MR_small.dcm"))  # one slice with its geometry
    import pydicom

    ds = pydicom.dcmread(real_data("dicom/pydicom_testdata/MR_small.dcm"), stop_before_pixels=True)
    assert pixel_spacing(mr) == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
