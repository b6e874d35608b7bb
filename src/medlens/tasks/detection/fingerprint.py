"""What a detection dataset's boxes are like: sizes, aspect ratios, objects per image, class balance.

Part of the fingerprint (``fingerprint["boxes"]``) of detection datasets; the detection plan's input size,
anchors and detector family are derived from it. Reads only the small boxes files, so it measures every case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.data.boxes import read_boxes
from medlens.data.dataset import SPLITS, Dataset

PERCENTILES = (5, 25, 50, 75, 95)


def box_statistics(dataset: Dataset) -> dict[str, Any]:
    """Box and image-size statistics of the training split (class counts of every split).

    Sizes are in pixels of the original images; ``side`` is the square root of the box area; ``aspect`` is
    height / width (the convention of torchvision's anchor generators).
    """
    counts = {s: np.zeros(dataset.num_classes, dtype=int) for s in SPLITS}
    sides, aspects, widths, heights, per_image, sizes, classes = [], [], [], [], [], [], []
    for case in dataset.split("all"):
        boxes, labels, size = read_boxes(dataset, case)
        if case.split in counts:
            np.add.at(counts[case.split], labels, 1)
        if case.split != "train":
            continue
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        sides.append(np.sqrt(w * h))
        classes.append(labels)
        aspects.append(h / np.maximum(w, 1e-6))
        widths.append(w)
        heights.append(h)
        per_image.append(len(labels))
        sizes.append(size)
    side = np.concatenate(sides) if sides else np.zeros(0)
    label = np.concatenate(classes) if classes else np.zeros(0, dtype=int)
    n = np.array(per_image) if per_image else np.zeros(1)
    image_sizes = np.array(sizes) if sizes else np.zeros((1, 2))
    return {
        "class_counts": {s: [int(v) for v in c] for s, c in counts.items()},
        "n_boxes_train": int(side.size),
        "objects_per_image": {"mean": float(n.mean()), "median": float(np.median(n)), "max": int(n.max())},
        "negative_images_train": int((n == 0).sum()) if per_image else 0,
        "side": _percentiles(side),
        "side_per_class": {name: _percentiles(side[label == k]) for k, name in enumerate(dataset.spec.classes)},
        "width": _percentiles(np.concatenate(widths) if widths else np.zeros(0)),
        "height": _percentiles(np.concatenate(heights) if heights else np.zeros(0)),
        "aspect": _percentiles(np.concatenate(aspects) if aspects else np.zeros(0)),
        "relative_side_median": float(np.median(side / np.sqrt(image_sizes.prod(axis=1)).mean())) if side.size else 0.0,
        "image_size": {
            "median": [int(v) for v in np.median(image_sizes, axis=0)],
            "min": [int(v) for v in image_sizes.min(axis=0)],
            "max": [int(v) for v in image_sizes.max(axis=0)],
        },
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}
