"""Bounding boxes of a detection dataset: validation, the per-image boxes file, and the shared import writer.

A detection case's manifest ``target`` is the path (relative to the dataset folder) of a JSON file::

    {"image_size": [480, 640],                       # rows (height), columns (width)
     "boxes": [{"box": [x1, y1, x2, y2], "label": 0}, ...]}   # pixels, x along columns, label indexes classes

An image without boxes is a negative (``"boxes": []``) and is kept. Every importer (VOC, COCO, YOLO) turns its
own format into :class:`ImageRecord` values and hands them to :func:`write_detection_dataset`, so validation
(coordinates that are not finite numbers, clipping, degenerate boxes) happens in one place. The images stay
where they are; the folder they come from is listed under ``image_roots`` in ``dataset.yaml``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, write_dataset
from medlens.data.sources import absolute_path

log = logging.getLogger(__name__)
MIN_SIDE = 2.0  # boxes narrower or lower than this many pixels (after clipping) are dropped as degenerate


@dataclass
class ImageRecord:
    """One annotated image as an importer read it (boxes in pixels, x1 y1 x2 y2)."""

    case_id: str
    image: Path
    size: tuple[int, int]  # (height, width)
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    split: str = ""
    source: str = ""  # the annotation file, for warnings


def validate_boxes(record: ImageRecord) -> tuple[list[list[float]], list[int], Counter[str]]:
    """Clip the record's boxes to the image and drop degenerate ones, logging a warning that names the file.

    Returns:
        The kept boxes, their labels, and counts of what was changed (``clipped``, ``dropped``).

    Raises:
        InputError: a coordinate that is not a finite number (NaN, infinity), naming the annotation file.
    """
    height, width = record.size
    kept: list[list[float]] = []
    labels: list[int] = []
    changes: Counter[str] = Counter()
    where = record.source or str(record.image)
    for box, label in zip(record.boxes, record.labels, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise InputError(where, f"box {list(box)} of {record.case_id}: a coordinate is not a finite number")
        clipped = [
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        ]
        if clipped != [x1, y1, x2, y2]:
            changes["clipped"] += 1
            log.debug("%s: box %s clipped to the %dx%d image", where, box, width, height)
        if clipped[2] - clipped[0] < MIN_SIDE or clipped[3] - clipped[1] < MIN_SIDE:
            changes["dropped"] += 1
            log.warning("%s: degenerate box %s (after clipping %s) dropped", where, box, clipped)
            continue
        kept.append([round(v, 3) for v in clipped])
        labels.append(int(label))
    return kept, labels, changes


def write_detection_dataset(
    out: str | Path,
    *,
    name: str,
    classes: list[str],
    records: list[ImageRecord],
    source: dict[str, str],
    image_roots: Sequence[Path],
    overwrite: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    inputs: Sequence[Path] = (),
    label_fraction: float = 1.0,
) -> Dataset:
    """Validate the records' boxes and write a detection dataset (manifest + ``boxes/<case>.json``).

    Records without a split are split by image (seeded; stratified by whether the image has boxes).
    ``image_roots`` are the folders the images lie in (the manifest refers to them by absolute path).
    ``label_fraction`` below 1 keeps the boxes of that share of the training images (stratified by whether an
    image has boxes, seeded by ``seed``); the others stay as unlabeled images (:mod:`medlens.data.labels`).
    """
    from medlens.data.labels import apply_label_fraction
    from medlens.data.splits import assign_splits

    if not records:
        raise InputError(source.get("annotations", out), "no annotated images found")
    for record in records:
        if not record.image.is_file():
            raise InputError(record.image, f"image file missing (referenced by {record.source or 'the annotations'})")
    totals: Counter[str] = Counter()
    cases: list[Case] = []
    files: dict[str, dict[str, object]] = {}
    owners: dict[str, ImageRecord] = {}
    for record in records:
        boxes, labels, changes = validate_boxes(record)
        totals.update(changes)
        target = f"boxes/{_safe_name(record.case_id)}.json"
        if target in owners:
            raise InputError(
                record.source or record.image,
                f"{record.image} and {owners[target].image} are both case {record.case_id!r} (listed twice, or names "
                "that differ only in characters a file name cannot hold); rename one",
            )
        owners[target] = record
        files[target] = {
            "image_size": list(record.size),
            "boxes": [{"box": b, "label": lab} for b, lab in zip(boxes, labels, strict=True)],
        }
        cases.append(Case(record.case_id, record.case_id, [str(absolute_path(record.image))], target, record.split))
    if totals["clipped"]:
        log.warning("%d box(es) crossed the image edge and were clipped to it", totals["clipped"])
    negatives = sum(not f["boxes"] for f in files.values())
    if negatives:
        log.info("%d image(s) without boxes kept as negatives", negatives)
    if any(not c.split for c in cases):
        strata = ["pos" if files[c.target]["boxes"] else "neg" for c in cases]
        assign_splits(cases, strata, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    from medlens.data.sources import describe_images

    _, channels, modality = describe_images([r.image for r in records[:: max(1, len(records) // 10)]])
    spec = DatasetSpec(
        name=name,
        task="detection",
        spatial_dims=2,
        modality=modality,
        channels=channels,
        classes=classes,
        source=source,
        image_roots=[str(absolute_path(r)) for r in image_roots],
    )
    strata = ["pos" if files[c.target]["boxes"] else "neg" for c in cases]
    spec, cases = apply_label_fraction(spec, cases, label_fraction, seed, strata)
    kept = {c.target for c in cases}
    files = {target: content for target, content in files.items() if target in kept}  # no boxes of unlabeled ones
    guarded = [("input", p) for p in [*inputs, *image_roots]]  # what the user gave, kept clear of the output
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=guarded) as tmp:
        (tmp / "boxes").mkdir()
        for target, content in files.items():
            (tmp / target).write_text(json.dumps(content))
        write_dataset(tmp, spec, cases)
    counts = Counter(lab["label"] for f in files.values() for lab in f["boxes"])  # type: ignore[attr-defined]
    log.info(
        "imported %d images, %d boxes (%s)",
        len(cases),
        sum(counts.values()),
        ", ".join(f"{classes[k]} {v}" for k, v in sorted(counts.items())),
    )
    return load_dataset(out)


def read_boxes(dataset: Dataset, case: Case) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A case's boxes ``(N, 4)`` float32 (x1, y1, x2, y2 in pixels), labels ``(N,)`` int64, and image size (H, W)."""
    path = dataset.root / case.target
    if not path.is_file():
        raise InputError(path, f"boxes file of case {case.case_id} missing")
    try:
        content = json.loads(path.read_text())
        items = content["boxes"]
        boxes = np.array([b["box"] for b in items], dtype=np.float32).reshape(-1, 4)
        labels = np.array([b["label"] for b in items], dtype=np.int64)
        size = (int(content["image_size"][0]), int(content["image_size"][1]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(path, f"not a medlens boxes file ({type(exc).__name__}: {exc})") from None
    if len(labels) and (labels.min() < 0 or labels.max() >= dataset.num_classes):
        raise InputError(path, f"label outside the {dataset.num_classes} declared classes")
    return boxes, labels, size


def _safe_name(case_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case_id)


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) of an image file; pictures are measured from their header, others are read."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not path.is_file():
        raise InputError(path, "image file missing")
    try:
        with PILImage.open(path) as picture:
            width, height = picture.size
            return int(height), int(width)
    except PILImage.DecompressionBombError as exc:
        raise InputError(path, f"unreadable picture ({exc})") from None
    except (UnidentifiedImageError, OSError):
        from medlens.io import read_image

        image = read_image(path).as_2d()
        if image.spatial_dims != 2:
            raise InputError(path, f"a {image.spatial_dims}D image; detection takes 2D images") from None
        rows, columns = image.spatial_shape
        return rows, columns


def report_unknown(where: Path, found: Counter[str], names: list[str]) -> None:
    """Warn about object class names that are not among ``names`` (those objects are left out)."""
    unknown = {n: c for n, c in found.items() if n not in names}
    if unknown:
        listed = ", ".join(f"{n!r} ({c})" for n, c in sorted(unknown.items()))
        log.warning("%s: unknown class name(s) left out: %s (known: %s)", where, listed, ", ".join(names))
