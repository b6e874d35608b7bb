"""VOC, COCO and YOLO importers on real BCCD images: boxes, splits, and every kind of bad input."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
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


def _to_yolo(voc_dataset, root: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write the VOC-imported boxes in a YOLO folder (images/SPLIT, labels/SPLIT, data.yaml)."""
    for case in voc_dataset.cases:
        boxes, labels, (h, w) = read_boxes(voc_dataset, case)
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
    (root / "data.yaml").write_text(yaml.safe_dump({"names": {i: n for i, n in enumerate(voc_dataset.spec.classes)}}))
    return root


def test_yolo_gives_the_same_boxes_and_keeps_negatives(voc_tiny, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(4, 2)
    from_voc = get_importer("voc")(voc, tmp_path / "voc_ds")
    root = _to_yolo(from_voc, tmp_path / "yolo")
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


# --------------------------------------------------------------------------------------------- paths stay inside


@pytest.mark.parametrize("filename", ["../../outside.jpg", "ABSOLUTE"])
def test_voc_filename_outside_jpegimages_is_refused(voc_tiny, tmp_path: Path, filename: str) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    outside = tmp_path / "outside.jpg"  # a real picture outside the VOC folder: it must not be read
    outside.write_bytes(sorted((voc / "JPEGImages").glob("*.jpg"))[1].read_bytes())
    filename = str(outside) if filename == "ABSOLUTE" else filename
    text = xml.read_text()
    start, end = text.index("<filename>"), text.index("</filename>")
    xml.write_text(text[:start] + f"<filename>{filename}</filename>" + text[end + len("</filename>") :])
    with pytest.raises(InputError, match="outside") as info:
        get_importer("voc")(voc, tmp_path / "ds")
    assert info.value.path == xml
    assert not (tmp_path / "ds").exists()


def test_coco_file_name_outside_the_images_folder_is_refused(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    ann = _to_coco(get_importer("voc")(voc, tmp_path / "voc_ds"), tmp_path)
    content = json.loads(ann.read_text())
    outside = voc / "outside.jpg"
    outside.write_bytes((voc / "JPEGImages" / content["images"][0]["file_name"]).read_bytes())
    content["images"][0]["file_name"] = "../outside.jpg"
    ann.write_text(json.dumps(content))
    with pytest.raises(InputError, match="outside") as info:
        get_importer("coco")(ann, voc / "JPEGImages", tmp_path / "coco_ds")
    assert info.value.path == ann and "../outside.jpg" in info.value.problem
    assert not (tmp_path / "coco_ds").exists()


def test_detection_importers_record_the_image_folder(voc_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each importer lists the one folder its images come from under image_roots, and every image is in it."""
    voc = voc_tiny(2, 1)
    from_voc = get_importer("voc")(voc, tmp_path / "voc_ds")
    from_coco = get_importer("coco")(_to_coco(from_voc, tmp_path), voc / "JPEGImages", tmp_path / "coco_ds")
    from_yolo = get_importer("yolo")(_to_yolo(from_voc, tmp_path / "yolo"), tmp_path / "yolo_ds")
    expected = [
        (from_voc, voc / "JPEGImages"),
        (from_coco, voc / "JPEGImages"),
        (from_yolo, tmp_path / "yolo" / "images"),
    ]
    for dataset, folder in expected:
        assert dataset.spec.image_roots == [str(folder)]
        assert all(Path(c.image[0]).is_relative_to(folder) for c in dataset.cases)
        assert all(not Path(c.target).is_absolute() for c in dataset.cases)  # boxes files live in the dataset


# --------------------------------------------------------------------------------------------- broken text files


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str], path: Path) -> str:
    """Run the command line in-process; it must fail with one ``medlens: error: <path>: ...`` line."""
    from medlens.cli.main import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("medlens:")]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert lines[0].startswith(f"medlens: error: {path}: "), lines[0]
    return lines[0]


def _first_xml(voc: Path) -> Path:
    return sorted((voc / "Annotations").glob("*.xml"))[0]


def _first_value(tag: str, value: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        start = text.index(f"<{tag}>") + len(tag) + 2
        return text[:start] + value + text[text.index(f"</{tag}>", start) :]

    return edit


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda t: "<annotation><object>", "XML"),
        (_first_value("width", "wide"), "size"),
        (_first_value("xmin", "inf"), "number"),
        (_first_value("ymax", "1e999"), "number"),
    ],
    ids=["not_xml", "size_not_a_number", "infinite_box", "overflowing_box"],
)
def test_broken_voc_annotation(
    voc_tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage, needle: str
) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    xml = _first_xml(voc)
    text = xml.read_text()
    xml.write_text(breakage(text))
    assert xml.read_text() != text
    out = tmp_path / "ds"
    line = cli_error(["import", "voc", str(voc), "--out", str(out)], capsys, xml)
    assert needle in line
    assert not out.exists()


def test_voc_image_set_not_utf8(voc_tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    listing = voc / "ImageSets" / "Main" / "train.txt"
    listing.write_bytes(listing.read_bytes() + "caf\xe9\n".encode("latin-1"))
    out = tmp_path / "ds"
    assert "UTF-8" in cli_error(["import", "voc", str(voc), "--out", str(out)], capsys, listing)
    assert not out.exists()


def _coco_breakages() -> list:
    def drop_file_name(c: dict) -> None:
        del c["images"][1]["file_name"]

    def categories_as_mapping(c: dict) -> None:
        c["categories"] = {"10": "Platelets"}

    def annotation_without_bbox(c: dict) -> None:
        del c["annotations"][0]["bbox"]

    def category_id_word(c: dict) -> None:
        c["annotations"][0]["category_id"] = "red cell"

    def image_not_a_mapping(c: dict) -> None:
        c["images"][0] = "BloodImage_00001.jpg"

    def nan_bbox(c: dict) -> None:
        c["annotations"][0]["bbox"] = [float("nan"), 1, 2, 3]

    return [
        (drop_file_name, "file_name"),
        (categories_as_mapping, "categories"),
        (annotation_without_bbox, "bbox"),
        (category_id_word, "category_id"),
        (image_not_a_mapping, "images"),
        (nan_bbox, "number"),
    ]


@pytest.mark.parametrize(("breakage", "needle"), _coco_breakages(), ids=lambda v: getattr(v, "__name__", v))
def test_broken_coco_file(voc_tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage, needle: str) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    ann = _to_coco(get_importer("voc")(voc, tmp_path / "voc_ds"), tmp_path)
    content = json.loads(ann.read_text())
    breakage(content)
    ann.write_text(json.dumps(content))
    out = tmp_path / "coco_ds"
    line = cli_error(["import", "coco", str(ann), str(voc / "JPEGImages"), "--out", str(out)], capsys, ann)
    assert needle in line
    assert not out.exists()


def test_coco_file_not_utf8_or_not_json(voc_tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    voc = voc_tiny(2, 1)
    ann = tmp_path / "instances.json"
    out = tmp_path / "coco_ds"
    for content, needle in [('{"images": ["caf\xe9"]}'.encode("latin-1"), "UTF-8"), (b"{not json", "JSON")]:
        ann.write_bytes(content)
        assert needle in cli_error(
            ["import", "coco", str(ann), str(voc / "JPEGImages"), "--out", str(out)], capsys, ann
        )
        assert not out.exists()


@pytest.fixture()
def yolo_tiny(voc_tiny, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return _to_yolo(get_importer("voc")(voc_tiny(2, 1), tmp_path / "voc_ds"), tmp_path / "yolo")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("0 nan 0.5 0.1 0.1", "line 2"),
        ("0 0.5 0.5 inf 0.1", "line 2"),
        ("0 0.5 0.5", "line 2"),
        ("x 0.5 0.5 0.1 0.1", "line 2"),
    ],
    ids=["nan", "inf", "too_few", "class_word"],
)
def test_broken_yolo_label_line(
    yolo_tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, needle: str
) -> None:
    label = sorted((yolo_tiny / "labels" / "train").glob("*.txt"))[0]
    first = label.read_text().splitlines()[0]
    label.write_text(f"{first}\n{line}\n")
    out = tmp_path / "yolo_ds"
    assert needle in cli_error(["import", "yolo", str(yolo_tiny), "--out", str(out)], capsys, label)
    assert not out.exists()


def test_yolo_label_file_not_utf8(yolo_tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    label = sorted((yolo_tiny / "labels" / "train").glob("*.txt"))[0]
    label.write_bytes(label.read_bytes() + "0 0,5 0,5 0,1 0,1 caf\xe9\n".encode("latin-1"))
    out = tmp_path / "yolo_ds"
    assert "UTF-8" in cli_error(["import", "yolo", str(yolo_tiny), "--out", str(out)], capsys, label)
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"- RBC\n- WBC\n", "mapping"),
        (b"names: [unclosed\n", "YAML"),
        (b"names: {first: RBC, second: WBC}\n", "names"),
        (b"names: 3\n", "names"),
        ("names: [caf\xe9]\n".encode("latin-1"), "UTF-8"),
    ],
    ids=["list", "not_yaml", "word_keys", "number", "latin1"],
)
def test_broken_yolo_data_yaml(
    yolo_tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, needle: str
) -> None:
    data_yaml = yolo_tiny / "data.yaml"
    data_yaml.write_bytes(content)
    out = tmp_path / "yolo_ds"
    assert needle in cli_error(["import", "yolo", str(yolo_tiny), "--out", str(out)], capsys, data_yaml)
    assert not out.exists()
