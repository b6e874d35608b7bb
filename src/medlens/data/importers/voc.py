"""Pascal VOC: ``Annotations/*.xml`` boxes, ``JPEGImages/`` pictures, ``ImageSets/Main/{train,val,test}.txt`` splits.

Images in ``JPEGImages`` without an XML file, and XML files without objects, are kept as negatives. When the
split lists are absent the images are split by a seeded fraction.

An annotation's ``<filename>`` names a picture inside ``JPEGImages``; one that leads out of it (``../x.jpg``, an
absolute path) is refused. The images stay where they are, and ``JPEGImages`` is listed under ``image_roots``.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from medlens.core.errors import InputError
from medlens.data.boxes import ImageRecord, image_size_of, report_unknown, write_detection_dataset
from medlens.data.dataset import Dataset, read_text
from medlens.data.importers import register_importer
from medlens.data.sources import absolute_path, is_image_file

log = logging.getLogger(__name__)


@register_importer("voc")
def import_voc(
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
    """Import a Pascal VOC folder into a detection dataset.

    Args:
        folder: the VOC root (holding ``Annotations`` and ``JPEGImages``).
        out: the dataset folder to create.
        classes: class names in label order; objects of other names are reported and left out. By default
            every name found, sorted.
        val_fraction: share of images for validation when there are no ``ImageSets`` lists.
        test_fraction: share of images for testing when there are no ``ImageSets`` lists.
        seed: seed of that split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing dataset folder.

    Example:
        >>> import_voc("../shared/data/BCCD", "datasets/bccd")  # doctest: +SKIP
    """
    folder = Path(folder)
    annotations, images = folder / "Annotations", folder / "JPEGImages"
    if not annotations.is_dir():
        raise InputError(folder, "not a Pascal VOC folder (no Annotations/ subfolder)")
    parsed = [_parse(path, images) for path in sorted(annotations.glob("*.xml"))]
    by_stem = {p[0]: p for p in parsed}
    if images.is_dir():
        for path in sorted(p for p in images.iterdir() if p.is_file() and is_image_file(p)):
            if path.stem not in by_stem:
                log.info("%s: no annotation file, kept as a negative image", path)
                by_stem[path.stem] = (path.stem, path, None, [])
    if not by_stem:
        raise InputError(folder, "no annotation files or images found")
    found = Counter(name for _, _, _, objects in by_stem.values() for name, _ in objects)
    names = list(classes) if classes else sorted(found)
    if not names:
        raise InputError(annotations, "no objects in any annotation file (give the class names with --classes)")
    report_unknown(annotations, found, names)
    splits = _splits(folder)
    records = []
    for stem, image, size, objects in by_stem.values():
        actual = image_size_of(image)
        if size is not None and size != actual:
            log.warning("%s: annotation says %s (HxW) but the image is %s; using the image", image, size, actual)
        known = [(names.index(n), box) for n, box in objects if n in names]
        records.append(
            ImageRecord(
                case_id=stem,
                image=image,
                size=actual,
                boxes=[box for _, box in known],
                labels=[label for label, _ in known],
                split=splits.get(stem, ""),
                source=str(annotations / f"{stem}.xml"),
            )
        )
    if splits and any(not r.split for r in records):
        log.warning("%d image(s) in no ImageSets list: split by fraction", sum(not r.split for r in records))
    return write_detection_dataset(
        out,
        name=folder.resolve().name,
        classes=names,
        records=records,
        source={"format": "voc", "folder": str(folder.resolve()), "annotations": str(annotations.resolve())},
        image_roots=[images],
        overwrite=overwrite,
        inputs=[folder],
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        label_fraction=label_fraction,
    )


def _parse(path: Path, images: Path) -> tuple[str, Path, tuple[int, int] | None, list[tuple[str, list[float]]]]:
    """Stem, image path, annotated size (H, W) or None, and (name, box) objects of one XML file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(path, f"not valid XML ({exc})") from None
    filename = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    image = absolute_path(images / filename)
    if not image.is_relative_to(absolute_path(images)):
        raise InputError(path, f"<filename> {filename!r} leads outside {images}, where VOC images must be")
    try:
        found = image.is_file()
    except OSError as exc:  # a name the file system cannot hold (too long, ...)
        raise InputError(path, f"<filename> {filename!r:.80}: {exc.strerror}") from None
    if not found:
        image = next((absolute_path(p) for p in images.glob(f"{path.stem}.*") if is_image_file(p)), image)
    size = None
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width and height:
        try:
            size = (int(float(height)), int(float(width)))
        except (ValueError, OverflowError):
            raise InputError(path, f"<size> width {width!r} and height {height!r} are not both numbers") from None
        if min(size) <= 0:
            size = None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        values = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None or not v.strip() for v in values):
            raise InputError(path, f"object {name!r} lacks bndbox xmin/ymin/xmax/ymax")
        try:
            box = [float(v) for v in values]  # type: ignore[arg-type]
        except ValueError:
            raise InputError(path, f"object {name!r} has a non-numeric bndbox") from None
        if not all(math.isfinite(v) for v in box):
            raise InputError(path, f"object {name!r} has a bndbox value that is not a finite number: {values}")
        # VOC pixel indices are 1-based and inclusive; as continuous coordinates the box is [xmin - 1, xmax]
        objects.append((name, [box[0] - 1, box[1] - 1, box[2], box[3]]))
    return path.stem, image, size, objects


def _splits(folder: Path) -> dict[str, str]:
    lists = folder / "ImageSets" / "Main"
    split_of: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = lists / f"{split}.txt"
        if path.is_file():
            for line in read_text(path).split():
                split_of.setdefault(line.strip(), split)
    return split_of
