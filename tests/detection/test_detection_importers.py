"""VOC, COCO and YOLO importers on real BCCD images: boxes, splits, and every kind of bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from medlens.core.errors import InputError
from medlens.data.boxes import read_boxes
from medlens.data.importers import get_importer, list_importers


def _all_boxes(dataset) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    return {c.case_id: read_boxes(dataset, c) for c in dataset.cases}


def test_registered() -> None:
    assert {"voc", "coco", "yolo"} <= set(list_importers())


def test_voc_keeps_splits_and_boxes(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(4, 2)
    dataset = get_importer("voc")(voc, tmp_path / "ds")
    assert dataset.spec.task == "detection" and dataset.spec.classes == ["Platelets", "RBC", "WBC"]
    assert len(dataset.split("train")) == 4 and len(dataset.split("val")) == 2
    assert dataset.spec.channels == ["red", "green", "blue"]
    first = dataset.cases[0]
    boxes, labels, size = read_boxes(dataset, first)
    assert size == (480, 640) and len(boxes) == len(labels) > 0
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes[:, [0, 2]].max() <= 640 and boxes[:, [1, 3]].max() <= 480
    # the first object of the XML, 1-based inclusive pixels -> continuous coordinates
    import xml.etree.ElementTree as ET

    obj = ET.parse(voc / "Annotations" / f"{first.case_id}.xml").getroot().find("object")
    xmin = float(obj.findtext("bndbox/xmin"))
    xmax = float(obj.findtext("bndbox/xmax"))
    assert boxes[0, 0] == xmin - 1 and boxes[0, 2] == xmax


def test_voc_clips_drops_reports_and_keeps_negatives(voc_tiny, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(4, 2)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    extra = (
        "<object><name>RBC</name><bndbox><xmin>600</xmin><ymin>-5</ymin><xmax>700</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>RBC</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>10</xmax><ymax>60</ymax></bndbox></object>"
        "<object><name>Neutrophil</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    )
    xml.write_text(text.replace("</annotation>", extra + "</annotation>"))
    empty = sorted((voc / "Annotations").glob("*.xml"))[1]
    root_text = empty.read_text()
    empty.write_text(root_text[: root_text.index("<object>")] + "</annotation>")  # an image with no objects
    (voc / "Annotations" / f"{sorted((voc / 'Annotations').glob('*.xml'))[2].stem}.xml").unlink()  # no XML at all
    with caplog.at_level(logging.INFO):
        dataset = get_importer("voc")(voc, tmp_path / "ds", classes=["Platelets", "RBC", "WBC"])
    assert "clipped" in caplog.text and "degenerate box" in caplog.text and "Neutrophil" in caplog.text
    boxes = _all_boxes(dataset)
    assert len(dataset.cases) == 6  # negatives kept
    assert sum(len(b[1]) == 0 for b in boxes.values()) == 2
    b = boxes[xml.stem][0]
    assert [600 - 1, 0, 640, 50] in b.tolist()  # clipped to the 640x480 image


def test_voc_missing_image_is_named(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    victim = sorted((voc / "JPEGImages").glob("*.jpg"))[0]
    victim.unlink()
    with pytest.raises(InputError, match=victim.stem):
        get_importer("voc")(voc, tmp_path / "ds")


def test_voc_bad_xml_is_named(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    xml.write_text("<annotation><object>")
    with pytest.raises(InputError, match=xml.name):
        get_importer("voc")(voc, tmp_path / "ds")


def _to_coco(voc_dataset, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write the VOC-imported boxes as a COCO file (an independent route to the same boxes)."""
    images, annotations = [], []
    for i, case in enumerate(voc_dataset.cases, start=1):
        boxes, labels, (h, w) = read_boxes(voc_dataset, case)
        images.append({"id": i, "file_name": Path(case.image[0]).name, "height": h, "width": w})
        for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 10, "iscrowd": 0,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})  # fmt: skip
    annotations.append({"id": 999, "image_id": 1, "category_id": 10, "iscrowd": 1, "bbox": [0, 0, 50, 50]})
    categories = [{"id": k + 10, "name": n} for k, n in enumerate(voc_dataset.spec.classes)]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_coco_gives_the_same_boxes(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(4, 2)
    from_voc = get_importer("voc")(voc, tmp_path / "voc_ds")
    ann = _to_coco(from_voc, tmp_path)
    from_coco = get_importer("coco")(ann, voc / "JPEGImages", tmp_path / "coco_ds", val_fraction=0.3, test_fraction=0.0)
    assert from_coco.spec.classes == from_voc.spec.classes
    a, b = _all_boxes(from_voc), _all_boxes(from_coco)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key][0], b[key][0], atol=1e-4)
        assert a[key][1].tolist() == b[key][1].tolist()
    assert {c.split for c in from_coco.cases} == {"train", "val"}


def test_coco_missing_image_and_bad_json(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    ann = _to_coco(get_importer("voc")(voc, tmp_path / "voc_ds"), tmp_path)
    missing = sorted((voc / "JPEGImages").glob("*.jpg"))[0]
    missing.unlink()
    with pytest.raises(InputError, match=missing.name):
        get_importer("coco")(ann, voc / "JPEGImages", tmp_path / "coco_ds")
    ann.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        get_importer("coco")(ann, voc / "JPEGImages", tmp_path / "coco_ds2")


def test_yolo_gives_the_same_boxes_and_keeps_negatives(voc_tiny, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(4, 2)
    from_voc = get_importer("voc")(voc, tmp_path / "voc_ds")
    root = tmp_path / "yolo"
    for case in from_voc.cases:
        boxes, labels, (h, w) = read_boxes(from_voc, case)
        (root / "images" / case.split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / case.split).mkdir(parents=True, exist_ok=True)
        image = Path(case.image[0])
        (root / "images" / case.split / image.name).write_bytes(image.read_bytes())
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / [w, h]
        extent = (boxes[:, 2:] - boxes[:, :2]) / [w, h]
        lines = [
            f"{k} {c[0]:.8f} {c[1]:.8f} {e[0]:.8f} {e[1]:.8f}"
            for k, c, e in zip(labels.tolist(), centre, extent, strict=True)
        ]
        (root / "labels" / case.split / f"{image.stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": {i: n for i, n in enumerate(from_voc.spec.classes)}}))
    negative = sorted((root / "labels" / "train").glob("*.txt"))[0]
    negative.unlink()
    odd = sorted((root / "labels" / "train").glob("*.txt"))[0]
    odd.write_text(odd.read_text() + "7 0.5 0.5 0.1 0.1\n")
    with caplog.at_level(logging.INFO):
        from_yolo = get_importer("yolo")(root, tmp_path / "yolo_ds")
    assert "class index 7" in caplog.text
    a, b = _all_boxes(from_voc), {Path(k).name: v for k, v in _all_boxes(from_yolo).items()}
    assert len(b[negative.stem][1]) == 0
    for key in a:
        if key != negative.stem:
            np.testing.assert_allclose(b[key][0], a[key][0], atol=1e-3)
    assert {c.split for c in from_yolo.cases} == {"train", "val"}
    odd.write_text("0 0.5 nonsense\n")
    with pytest.raises(InputError, match=f"{odd.name}.*line 1"):
        get_importer("yolo")(root, tmp_path / "yolo_ds2")
