"""YOLO text labels: one ``.txt`` per image, a line ``class cx cy w h`` per box (normalised to the image size).

Layouts accepted::

    DIR/images/{train,val,test}/*.jpg  DIR/labels/{train,val,test}/*.txt   -> the given splits are kept
    DIR/images/*.jpg  DIR/labels/*.txt                                     -> split by a seeded fraction

Class names come from ``DIR/data.yaml`` (``names``) or ``DIR/classes.txt``. An image without a label file, or
with an empty one, is kept as a negative.

Images are found under ``DIR/images`` only (the ``train:``/``val:`` paths of a ``data.yaml`` are not followed),
so every image lies inside the folder given; they stay where they are, and ``DIR/images`` is listed under
``image_roots``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

from medlens.core.errors import InputError
from medlens.data.boxes import ImageRecord, image_size_of, report_unknown, write_detection_dataset
from medlens.data.dataset import SPLITS, Dataset, load_yaml, read_text
from medlens.data.importers import register_importer
from medlens.data.sources import is_image_file

log = logging.getLogger(__name__)


@register_importer("yolo")
def import_yolo(
    folder: str | Path,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
) -> Dataset:
    """Import a YOLO-format folder (``images/`` and ``labels/``) into a detection dataset.

    Args:
        folder: the dataset root.
        out: the dataset folder to create.
        classes: class names in index order (default: ``data.yaml`` or ``classes.txt``).
        val_fraction: share of images for validation when there are no split folders.
        test_fraction: share of images for testing when there are no split folders.
        seed: seed of that split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing dataset folder.

    Example:
        >>> import_yolo("cells_yolo/", "datasets/cells")  # doctest: +SKIP
    """
    folder = Path(folder)
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir():
        raise InputError(folder, "not a YOLO folder (no images/ subfolder)")
    names = list(classes) if classes else _class_names(folder)
    split_dirs = [s for s in SPLITS if (images_dir / s).is_dir()]
    roots = [(s, images_dir / s) for s in split_dirs] or [("", images_dir)]
    found: Counter[str] = Counter()
    records = []
    for split, root in roots:
        for image in sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)):
            relative = image.relative_to(images_dir)
            label_file = (labels_dir / relative).with_suffix(".txt")
            size = image_size_of(image)
            objects = _read_labels(label_file, size) if label_file.is_file() else []
            if not label_file.is_file():
                log.info("%s: no label file, kept as a negative image", image)
            boxes, labels = [], []
            for index, box in objects:
                name = names[index] if index < len(names) else f"class index {index}"
                found[name] += 1
                if index < len(names):
                    boxes.append(box)
                    labels.append(index)
            records.append(
                ImageRecord(relative.with_suffix("").as_posix(), image, size, boxes, labels, split, str(label_file))
            )
    report_unknown(labels_dir, found, names)
    return write_detection_dataset(
        out,
        name=folder.resolve().name,
        classes=names,
        records=records,
        source={"format": "yolo", "folder": str(folder.resolve())},
        image_roots=[images_dir],
        overwrite=overwrite,
        inputs=[folder],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
    )


def _class_names(folder: Path) -> list[str]:
    data_yaml = next((p for p in (folder / "data.yaml", folder / "dataset.yaml") if p.is_file()), None)
    if data_yaml is not None:
        content = load_yaml(data_yaml)
        if content is not None and not isinstance(content, dict):
            raise InputError(data_yaml, "not a mapping of keys to values (YOLO's data.yaml holds 'names: [...]')")
        names = (content or {}).get("names")
        if isinstance(names, dict):
            try:
                return [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise InputError(data_yaml, f"names: keys must be class indices 0, 1, ..., not {list(names)}") from None
        if isinstance(names, list) and names:
            return [str(n) for n in names]
        if names is not None:
            raise InputError(data_yaml, f"names must be a list of class names or a mapping index: name, not {names!r}")
    classes_txt = folder / "classes.txt"
    if classes_txt.is_file():
        return [line.strip() for line in read_text(classes_txt).splitlines() if line.strip()]
    raise InputError(folder, "no class names (no data.yaml 'names', no classes.txt); give them with --classes")


def _read_labels(path: Path, size: tuple[int, int]) -> list[tuple[int, list[float]]]:
    height, width = size
    objects = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            index = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            raise InputError(path, f"line {number}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if len(parts) < 5 or index < 0:
            raise InputError(path, f"line {number}: expected 'class cx cy w h', got {line.strip()!r}")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise InputError(path, f"line {number}: {line.strip()!r} holds a value that is not a finite number")
        box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        objects.append((index, box))
    return objects
