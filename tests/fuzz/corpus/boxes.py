"""Mutations of detection annotations: Pascal VOC, COCO and YOLO (from the real BCCD images and boxes)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
    coco_content,
    coco_folder,
    marker_for,
    voc_folder,
    yolo_folder,
)

# ---- Pascal VOC folders -------------------------------------------------------------------------------------------

_KEPT_AND_WARNED = "the box is clipped to the image, or dropped when nothing is left, with a warning naming the file"


def _voc(folder: Path, src: Sources, change: Callable[[str], str] | None = None, index: int = 1) -> Built:
    """The VOC folder with annotation ``index`` edited as text (the XML as a broken tool would write it)."""
    voc = voc_folder(folder / "voc", src)
    stem = src.bccd[index][0]
    path = voc / "Annotations" / f"{stem}.xml"
    if change is not None:
        path.write_text(change(path.read_text()))
    return Built(voc, path.name)


def _first_box(xml: str, **values: str) -> str:
    import re

    for key, value in values.items():
        xml = re.sub(f"<{key}>[^<]*</{key}>", f"<{key}>{value}</{key}>", xml, count=1)
    return xml


@mutation("voc")
def voc__xml_not_xml(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: "annotation: RBC 10 20 30 40\n")


@mutation("voc")
def voc__xml_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml[: len(xml) // 2])


@mutation("voc")
def voc__box_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="nan"))


@mutation("voc")
def voc__box_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmax="inf"))


@mutation("voc")
def voc__box_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, ymin="twelve"))


@mutation("voc")
def voc__box_coordinate_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml.replace("<ymax>", "<ymaximum>", 1).replace("</ymax>", "</ymaximum>", 1))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="-50", ymin="-50"))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_inverted(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="300", xmax="100"))


@mutation("voc", valid={"import-voc": _KEPT_AND_WARNED})
def voc__box_outside_the_image(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, xmin="5000", ymin="5000", xmax="6000", ymax="6000"))


@mutation("voc", valid={"import-voc": "objects of an unknown class are left out, with a warning naming them"})
def voc__unknown_class(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: xml.replace("<name>RBC</name>", "<name>Alien</name>", 1))


@mutation("voc")
def voc__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    stem = src.bccd[1][0]
    (built.path / "JPEGImages" / f"{stem}.jpg").unlink()
    return Built(built.path, f"{stem}.jpg")


@mutation("voc")
def voc__image_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    stem = src.bccd[1][0]
    path = built.path / "JPEGImages" / f"{stem}.jpg"
    path.write_bytes(path.read_bytes()[:5000])
    return Built(built.path, f"{stem}.jpg")


@mutation("voc")
def voc__filename_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, filename="../../../../etc/hostname"))


@mutation("voc")
def voc__filename_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, filename="x" * 300 + ".jpg"))


@mutation("voc")
def voc__external_entity(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(xml: str) -> str:
        doctype = '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/hostname">]>\n'
        return doctype + xml.replace("<name>RBC</name>", "<name>&secret;</name>", 1)

    return _voc(folder, src, change)


@mutation("voc")
def voc__size_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _voc(folder, src, lambda xml: _first_box(xml, width="wide"))


@mutation("voc")
def voc__image_sets_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _voc(folder, src)
    path = built.path / "ImageSets" / "Main" / "val.txt"
    path.write_bytes(path.read_bytes() + b"caf\xe9\n")
    return Built(built.path, "val.txt")


@mutation("voc")
def voc__no_objects_anywhere(folder: Path, src: Sources, rng: random.Random) -> Built:
    import re

    voc = voc_folder(folder / "voc", src)
    for path in (voc / "Annotations").glob("*.xml"):
        path.write_text(re.sub(r"<object>.*?</object>", "", path.read_text(), flags=re.S))
    return Built(voc, "Annotations")


# ---- COCO annotations ---------------------------------------------------------------------------------------------


def _coco(
    folder: Path, src: Sources, change: Callable[[dict[str, Any]], Any] | None = None, text: str | None = None
) -> Built:
    content = coco_content(src)
    if change is not None:
        content = change(content) or content
    target = coco_folder(folder / "coco", src, content)
    if text is not None:
        (target / "annotations.json").write_text(text)
    return Built(target, "annotations.json")


def _first_annotation(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(content: dict[str, Any]) -> None:
        content["annotations"][0].update(values)

    return change


@mutation("coco")
def coco__not_json(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, text='{"images": [{"id": 1, "file_name": ')


@mutation("coco")
def coco__not_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, text="[]")


@mutation("coco")
def coco__images_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"images": {"1": "a.jpg"}})


@mutation("coco")
def coco__annotations_not_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"annotations": "none"})


@mutation("coco")
def coco__image_without_id(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].pop("id") and None)


@mutation("coco")
def coco__id_fractional(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(id=1.5))


@mutation("coco")
def coco__id_boolean(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(category_id=True))


@mutation("coco")
def coco__bbox_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[math.nan, 10, 20, 20]))


@mutation("coco")
def coco__bbox_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[10, 10, math.inf, 20]))


@mutation("coco")
def coco__bbox_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=["ten", 10, 20, 20]))


@mutation("coco")
def coco__bbox_five_values(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[10, 10, 20, 20, 1]))


@mutation("coco")
def coco__bbox_a_mapping(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox={"x": 1, "y": 2, "w": 3, "h": 4}))


@mutation("coco", valid={"import-coco": _KEPT_AND_WARNED})
def coco__bbox_negative_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(bbox=[100, 100, -40, -40]))


@mutation("coco", valid={"import-coco": "annotations of an unknown category are left out, with a warning naming it"})
def coco__unknown_category(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, _first_annotation(category_id=99))


@mutation("coco")
def coco__no_categories(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c | {"categories": []})


@mutation("coco")
def coco__file_name_leaving_the_folder(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name="../../../../etc/hostname"))


@mutation("coco")
def coco__file_name_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name="x" * 300 + ".jpg"))


@mutation("coco")
def coco__file_name_not_text(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _coco(folder, src, lambda c: c["images"][0].update(file_name={"path": "a.jpg"}))


@mutation("coco")
def coco__image_missing(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _coco(folder, src, lambda c: c["images"][0].update(file_name="missing.jpg"))
    return Built(built.path, "missing.jpg")


@mutation("coco")
def coco__same_file_twice(folder: Path, src: Sources, rng: random.Random) -> Built:
    def change(content: dict[str, Any]) -> None:
        content["images"].append(dict(content["images"][0], id=99))

    built = _coco(folder, src, change)
    return Built(built.path, src.bccd[0][0])


@mutation("coco")
def coco__not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _coco(folder, src)
    path = built.path / "annotations.json"
    path.write_bytes(path.read_bytes().replace(b'"RBC"', b'"RBC \xe9"'))
    return built


# ---- YOLO folders -------------------------------------------------------------------------------------------------


def _yolo(folder: Path, src: Sources, change: Callable[[str], str] | None = None) -> Built:
    root = yolo_folder(folder / "yolo", src)
    path = root / "labels" / "train" / f"{src.bccd[1][0]}.txt"
    if change is not None:
        path.write_text(change(path.read_text()))
    return Built(root, path.name)


def _first_line(**fields: str) -> Callable[[str], str]:
    order = ("index", "cx", "cy", "w", "h")

    def change(text: str) -> str:
        lines = text.splitlines()
        parts = lines[0].split()
        for key, value in fields.items():
            parts[order.index(key)] = value
        return "\n".join([" ".join(parts), *lines[1:]]) + "\n"

    return change


@mutation("yolo")
def yolo__line_too_short(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, lambda text: "1 0.5 0.5\n" + text)


@mutation("yolo")
def yolo__value_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cx="nan"))


@mutation("yolo")
def yolo__value_infinite(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(w="1e999"))


@mutation("yolo")
def yolo__value_not_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cy="middle"))


@mutation("yolo")
def yolo__class_index_negative(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="-1"))


@mutation("yolo")
def yolo__class_index_fractional(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="1.5"))


@mutation("yolo", valid={"import-yolo": "objects of an unknown class index are left out, with a warning naming them"})
def yolo__class_index_unknown(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(index="7"))


@mutation("yolo", valid={"import-yolo": _KEPT_AND_WARNED})
def yolo__box_outside_the_image(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(cx="3.5", cy="-2"))


@mutation("yolo", valid={"import-yolo": _KEPT_AND_WARNED})
def yolo__box_negative_size(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _yolo(folder, src, _first_line(w="-0.1"))


@mutation("yolo")
def yolo__labels_not_utf8(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    path = built.path / "labels" / "train" / built.names
    path.write_bytes(b"\xff\xfe" + path.read_bytes())
    return built


@mutation("yolo")
def yolo__data_yaml_not_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: [Platelets, RBC\n  WBC: [")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__data_yaml_a_list(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("- Platelets\n- RBC\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__names_a_number(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: 3\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__names_keys_not_indices(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").write_text("names: {a: Platelets, b: RBC}\n")
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__no_class_names(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    (built.path / "data.yaml").unlink()
    return Built(built.path)


@mutation("yolo")
def yolo__python_tag_in_data_yaml(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    marker = marker_for(folder)
    (built.path / "data.yaml").write_text(f'names: !!python/object/apply:builtins.open ["{marker}", "w"]\n')
    return Built(built.path, "data.yaml")


@mutation("yolo")
def yolo__image_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _yolo(folder, src)
    path = built.path / "images" / "train" / f"{src.bccd[1][0]}.jpg"
    path.write_bytes(path.read_bytes()[:5000])
    return Built(built.path, path.name)
