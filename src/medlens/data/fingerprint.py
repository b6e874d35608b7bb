"""What the data is, measured once: shapes, spacings, intensities, class balance, size.

The plan is derived from this and nothing else, so the same data always gets the same plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import InputError
from medlens.data.dataset import SPLITS, Dataset

log = logging.getLogger(__name__)
FINGERPRINT_VERSION = 1


def compute_fingerprint(dataset: Dataset, *, max_images: int = 400, seed: int = 0) -> dict[str, Any]:
    """Measure a dataset; reads at most ``max_images`` images (a seeded sample) for shapes and intensities.

    The result is cached in ``DATASET/fingerprint.json`` and recomputed when the manifest changes.
    """
    manifest = dataset.root / dataset.spec.manifest
    digest = hashlib.sha1(manifest.read_bytes()).hexdigest()
    cache = dataset.root / "fingerprint.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("manifest_sha1") == digest and cached.get("version") == FINGERPRINT_VERSION:
            return dict(cached)
    from medlens.io import read_image

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.cases))[:max_images]
    shapes, spacings, channels = [], [], []
    values: list[np.ndarray] = []
    for i in sorted(order):
        case = dataset.cases[int(i)]
        path = dataset.image_paths(case)[0]
        image = read_image(path)
        if dataset.spec.spatial_dims == 2:
            image = image.as_2d()
        if image.spatial_dims != dataset.spec.spatial_dims:
            raise InputError(path, f"{image.spatial_dims}D image in a {dataset.spec.spatial_dims}D dataset")
        shapes.append(image.spatial_shape)
        spacings.append(image.spacing)
        channels.append(image.channels)
        flat = image.array.reshape(-1).astype(np.float32)
        values.append(flat[rng.integers(0, flat.size, size=min(flat.size, 4096))])
    sample = np.concatenate(values)
    unique = np.unique(sample)
    fingerprint: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "manifest_sha1": digest,
        "task": dataset.spec.task,
        "spatial_dims": dataset.spec.spatial_dims,
        "modality": dataset.spec.modality,
        "n_cases": {s: len(dataset.split(s)) for s in SPLITS} | {"all": len(dataset.cases)},
        "n_patients": len({c.patient_id for c in dataset.cases}),
        "class_names": dataset.spec.classes,
        "class_counts": {s: class_counts(dataset, s) for s in ("train", "val", "test")},
        "shape": {
            "median": [int(v) for v in np.median(np.array(shapes), axis=0)],
            "min": [int(v) for v in np.min(np.array(shapes), axis=0)],
            "max": [int(v) for v in np.max(np.array(shapes), axis=0)],
        },
        "spacing_median": [float(v) for v in np.median(np.array(spacings), axis=0)],
        "channels": int(np.bincount(channels).argmax()),
        "intensity": {
            "mean": float(sample.mean()),
            "std": float(sample.std()),
            "min": float(sample.min()),
            "max": float(sample.max()),
            "p00_5": float(np.percentile(sample, 0.5)),
            "p99_5": float(np.percentile(sample, 99.5)),
            "n_unique": int(min(len(unique), 1000)),
        },
        "images_measured": len(shapes),
    }
    if dataset.spec.task == "detection":
        from medlens.data.fingerprint_detection import box_statistics

        fingerprint["boxes"] = box_statistics(dataset)
        fingerprint["class_counts"] = fingerprint["boxes"]["class_counts"]  # objects per class, not images
    if dataset.spec.task == "segmentation":
        from medlens.data.fingerprint_segmentation import segmentation_statistics

        fingerprint["segmentation"] = segmentation_statistics(dataset)
    write_text_atomic(cache, json.dumps(fingerprint, indent=2))
    return fingerprint


def class_counts(dataset: Dataset, split: str) -> list[int]:
    """Cases per class (positives per label for multi-label) in one split."""
    cases = dataset.split(split)
    counts = np.zeros(dataset.num_classes, dtype=int)
    if dataset.spec.task == "multilabel":
        for case in cases:
            counts += np.array(dataset.label_vector(case))
    elif dataset.spec.task == "classification":
        for case in cases:
            counts[dataset.class_index(case)] += 1
    return [int(v) for v in counts]


def load_fingerprint(root: Path) -> dict[str, Any] | None:
    path = root / "fingerprint.json"
    return json.loads(path.read_text()) if path.is_file() else None
