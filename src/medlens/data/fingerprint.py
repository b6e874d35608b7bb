"""What the data is, measured once: shapes, spacings, intensities, class balance, size.

The plan is derived from this and nothing else, so the same data always gets the same plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import require_finite
from medlens.core.outputs import write_json
from medlens.data.dataset import SPLITS, Dataset

log = logging.getLogger(__name__)
FINGERPRINT_VERSION = 2  # 2: segmentation spacings and shapes along the canonical (RAS) axes


def compute_fingerprint(
    dataset: Dataset,
    *,
    task_part: Callable[[Dataset], dict[str, Any]] | None = None,
    max_images: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure a dataset; reads at most ``max_images`` images (a seeded sample) for shapes and intensities.

    Args:
        dataset: the dataset.
        task_part: the task's own measurements (box sizes, class volumes, class counts), merged in.
        max_images: images read for the shared statistics.
        seed: seed of the sample.

    The result is cached in ``DATASET/fingerprint.json`` and recomputed when the manifest changes.
    """
    manifest = dataset.root / dataset.spec.manifest
    digest = hashlib.sha1(manifest.read_bytes()).hexdigest()
    cache = dataset.root / "fingerprint.json"
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            cached = None  # a damaged cache is measured again
        if (
            isinstance(cached, dict)
            and cached.get("manifest_sha1") == digest
            and cached.get("version") == FINGERPRINT_VERSION
            and (task_part is None or cached.get("task_part_included") is True)  # a cache without it is remeasured
        ):
            return dict(cached)
    from medlens.io import read_image

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.cases))[:max_images]
    shapes, spacings, channels = [], [], []
    values: list[np.ndarray] = []
    for i in sorted(order):
        case = dataset.cases[int(i)]
        path = dataset.image_paths(case)[0]
        image = require_finite(read_image(path), str(path), "train on")
        # pictures as 2D; volumes in the canonical orientation (RAS) that training uses
        image = image.as_2d() if dataset.spec.spatial_dims == 2 else image.reoriented()
        if image.spatial_dims != dataset.spec.spatial_dims:
            raise InputError(path, f"{image.spatial_dims}D image in a {dataset.spec.spatial_dims}D dataset")
        shapes.append(image.spatial_shape)
        spacings.append(image.spacing)
        channels.append(image.channels)
        flat = image.array.reshape(-1).astype(np.float32)
        values.append(flat[rng.integers(0, flat.size, size=min(flat.size, 4096))])
    fingerprint: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "manifest_sha1": digest,
        "task": dataset.spec.task,
        "spatial_dims": dataset.spec.spatial_dims,
        "modality": dataset.spec.modality,
        "n_cases": {s: len(dataset.split(s)) for s in SPLITS} | {"all": len(dataset.cases)},
        "n_patients": len({c.patient_id for c in dataset.cases}),
        "class_names": dataset.spec.classes,
        "images_measured": 0,
    }
    if shapes:  # none when the task's inputs are not images (max_images 0): its own part measures them
        fingerprint |= _image_statistics(shapes, spacings, channels, np.concatenate(values))
    if task_part is not None:
        fingerprint.update(task_part(dataset))
        fingerprint["task_part_included"] = True
    write_json(cache, fingerprint)
    return fingerprint


def _image_statistics(
    shapes: list[Any], spacings: list[Any], channels: list[int], sample: np.ndarray
) -> dict[str, Any]:
    """Shapes, spacings, channels and intensities of the images measured."""
    unique = np.unique(sample)
    return {
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


def load_fingerprint(root: Path) -> dict[str, Any] | None:
    path = root / "fingerprint.json"
    return json.loads(path.read_text()) if path.is_file() else None
