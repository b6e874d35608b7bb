"""COCO JSON: one annotations file (``images``, ``annotations`` with ``bbox`` [x, y, w, h], ``categories``).

Images listed without annotations are kept as negatives; crowd annotations (``iscrowd: 1``) are left out, as
COCO's own evaluation ignores them. Class order follows the category ids.

Every ``file_name`` must lie inside the images folder given; one that leads out of it (``../x.jpg``, an absolute
path) is refused. The images stay where they are, and that folder is listed under ``image_roots``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError
from medlens.data.boxes import ImageRecord, image_size_of, report_unknown, write_detection_dataset
from medlens.data.dataset import Dataset, read_text
from medlens.data.importers import register_importer
from medlens.data.sources import absolute_path

log = logging.getLogger(__name__)
REQUIRED = {  # the keys medlens reads from each entry of each list
    "images": ("id", "file_name"),
    "annotations": ("image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


@register_importer("coco")
def import_coco(
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
) -> Dataset:
    """Import a COCO-format annotations file and its image folder into a detection dataset.

    Args:
        annotations: the COCO JSON file.
        images: folder the ``file_name`` entries are relative to.
        out: the dataset folder to create.
        classes: class names in label order; other categories are reported and left out. By default every
            category, in id order.
        val_fraction: share of images for validation.
        test_fraction: share of images for testing.
        seed: seed of the split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing dataset folder.

    Example:
        >>> import_coco("instances.json", "images/", "datasets/cells")  # doctest: +SKIP
    """
    annotations, images = Path(annotations), Path(images)
    content = _load(annotations)
    categories = {int(c["id"]): str(c["name"]) for c in content.get("categories", [])}
    names = list(classes) if classes else [categories[k] for k in sorted(categories)]
    if not names:
        raise InputError(annotations, "no categories (give the class names with --classes)")
    per_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in content["images"]}
    found: Counter[str] = Counter()
    crowd = orphans = 0
    for ann in content.get("annotations", []):
        image_id = int(ann["image_id"])
        if image_id not in per_image:
            orphans += 1
            continue
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        name = categories.get(int(ann["category_id"]), f"category_id {ann['category_id']}")
        found[name] += 1
        per_image[image_id].append({"name": name, "bbox": ann["bbox"]})
    if orphans:
        log.warning("%s: %d annotation(s) refer to image ids not in 'images'; left out", annotations, orphans)
    if crowd:
        log.info("%s: %d crowd annotation(s) left out", annotations, crowd)
    report_unknown(annotations, found, names)
    records = []
    for i, entry in enumerate(content["images"]):
        path = absolute_path(images / str(entry["file_name"]))
        if not path.is_relative_to(absolute_path(images)):
            raise InputError(annotations, f"images[{i}] file_name {entry['file_name']!r} leads outside {images}")
        try:
            present = path.is_file()
        except OSError as exc:  # a name the file system cannot hold (too long, ...)
            raise InputError(annotations, f"images[{i}] file_name {entry['file_name']!r:.80}: {exc.strerror}") from None
        if not present:
            raise InputError(path, f"image file missing (listed in {annotations})")
        size = image_size_of(path)
        if _listed_size(entry) not in (None, size):
            log.warning("%s: %s lists %sx%s (HxW), the image is %s; using the image", path, annotations,
                        entry["height"], entry["width"], size)  # fmt: skip
        known = [a for a in per_image[int(entry["id"])] if a["name"] in names]
        records.append(
            ImageRecord(
                case_id=Path(str(entry["file_name"])).with_suffix("").as_posix(),
                image=path,
                size=size,
                boxes=[_xyxy(a["bbox"], annotations) for a in known],
                labels=[names.index(a["name"]) for a in known],
                source=str(annotations),
            )
        )
    return write_detection_dataset(
        out,
        name=annotations.resolve().parent.name,
        classes=names,
        records=records,
        source={"format": "coco", "annotations": str(annotations.resolve()), "images": str(images.resolve())},
        image_roots=[images],
        overwrite=overwrite,
        inputs=[annotations, images],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
    )


def _load(path: Path) -> dict[str, Any]:
    """The annotations file's content, checked for the keys and value types medlens reads."""
    if not path.is_file():
        raise InputError(path, "annotations file not found")
    try:
        content = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("images"), list):
        raise InputError(path, "not a COCO annotations file (no 'images' list)")
    for key, required in REQUIRED.items():
        entries = content.setdefault(key, [])
        if not isinstance(entries, list):
            raise InputError(path, f"'{key}' is not a list but a {type(entries).__name__}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise InputError(path, f"{key}[{i}] is not an object: {entry!r:.60}")
            missing = [k for k in required if k not in entry]
            if missing:
                raise InputError(path, f"{key}[{i}] lacks {', '.join(repr(k) for k in missing)}")
            for k in required:
                if k == "id" or k.endswith("_id"):
                    entry[k] = _integer(entry[k], path, f"{key}[{i}] {k}")
                elif k in ("file_name", "name") and (not isinstance(entry[k], str) or not entry[k].strip()):
                    raise InputError(path, f"{key}[{i}] {k} {entry[k]!r:.60} is not a name")
    return content


def _listed_size(entry: dict[str, Any]) -> tuple[int, int] | None:
    """The (height, width) an images entry lists, when it lists both as positive numbers."""
    try:
        height, width = int(entry["height"]), int(entry["width"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return (height, width) if height > 0 and width > 0 else None


def _integer(value: Any, where: Path, what: str) -> int:
    """An id as an int (COCO ids are integers; digit strings are accepted)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(where, f"{what} {value!r} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise InputError(where, f"{what} {value!r} is not an integer") from None


def _xyxy(bbox: Any, where: Path) -> list[float]:
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(where, f"bbox {bbox!r} is not [x, y, width, height]") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InputError(where, f"bbox {bbox!r} holds a value that is not a finite number")
    return [x, y, x + w, y + h]
