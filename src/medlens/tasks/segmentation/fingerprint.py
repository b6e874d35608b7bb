"""The segmentation part of the fingerprint: spacings, shapes, foreground intensities, class volumes.

Measured on the training and validation cases only (never the test split), in the spirit of nnU-Net's
dataset fingerprint: per-case spacing and shape (along the axes of the canonical RAS orientation), intensity
percentiles *inside the foreground* per channel (what CT normalisation clips to), the volume of each class,
and how anisotropic the voxels are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medlens.data.dataset import Dataset
from medlens.data.segmentation_cases import label_values_of, read_case

log = logging.getLogger(__name__)
SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case for the intensity statistics (as nnU-Net)


def segmentation_statistics(dataset: Dataset, *, max_cases: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Measure the training and validation cases (a seeded sample of ``max_cases`` when there are more).

    Returns:
        ``spacings`` and ``shapes`` per case, their medians, ``anisotropy`` (largest over smallest median
        spacing), ``foreground_intensity`` per channel (mean, std, percentiles 0.5/50/99.5), ``class_volume_mm3``
        (median per foreground class over the cases that hold it), ``class_presence`` (share of cases holding
        each class), and ``empty_masks`` (cases with no foreground).
    """
    cases = [c for c in dataset.split("all") if c.split != "test"] or dataset.split("all")
    rng = np.random.default_rng(seed)
    if len(cases) > max_cases:
        cases = [cases[int(i)] for i in sorted(rng.choice(len(cases), max_cases, replace=False))]
    dims, n_classes = dataset.spec.spatial_dims, dataset.num_classes
    values = label_values_of(dataset.spec.source)
    spacings, shapes, volumes, presence = [], [], [], []
    samples: list[list[np.ndarray]] = []
    empty = []
    for case in cases:
        image, mask = read_case(
            dataset.image_paths(case), Path(dataset.root / case.target), dims, n_classes, case.case_id, values
        )
        canonical = image.reoriented()  # the plan's axes are the canonical (RAS) ones; no voxel changes
        spacings.append(canonical.spacing)
        shapes.append(canonical.spatial_shape)
        voxel_mm3 = float(np.prod(image.spacing))
        counts = np.bincount(mask.array.ravel(), minlength=n_classes)[1:]  # voxels per foreground class
        volumes.append(counts * voxel_mm3)
        presence.append(counts > 0)
        foreground = mask.array[0] > 0
        if not foreground.any():
            empty.append(case.case_id)
            foreground = np.ones_like(foreground)  # no foreground: the whole image stands in for it
        per_channel = image.array[:, foreground]  # (C, n_foreground)
        pick = rng.integers(0, per_channel.shape[1], size=min(per_channel.shape[1], SAMPLES_PER_CASE))
        samples.append([per_channel[c, pick].astype(np.float32) for c in range(per_channel.shape[0])])
    n_channels = min(len(s) for s in samples)
    intensity = []
    for c in range(n_channels):
        v = np.concatenate([s[c] for s in samples])
        p005, p50, p995 = np.percentile(v, [0.5, 50, 99.5])
        intensity.append(
            {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "p00_5": float(p005),
                "p50": float(p50),
                "p99_5": float(p995),
            }
        )
    vol = np.array(volumes)  # (N, K-1)
    pres = np.array(presence)
    median_spacing = np.median(np.array(spacings), axis=0)
    if empty:
        log.warning("%d case(s) with an empty mask: %s", len(empty), ", ".join(empty[:10]))
    return {
        "cases_measured": len(cases),
        "spacings": [[round(float(s), 5) for s in sp] for sp in spacings],
        "shapes": [list(map(int, sh)) for sh in shapes],
        "spacing_median": [float(v) for v in median_spacing],
        "shape_median": [float(v) for v in np.median(np.array(shapes), axis=0)],
        "anisotropy": float(median_spacing.max() / median_spacing.min()),
        "foreground_intensity": intensity,
        "class_volume_mm3": [
            float(np.median(vol[pres[:, k], k])) if pres[:, k].any() else 0.0 for k in range(vol.shape[1])
        ],
        "class_presence": [float(v) for v in pres.mean(axis=0)],
        "empty_masks": empty,
    }
