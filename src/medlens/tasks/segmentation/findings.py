"""A segmentation in the report's vocabulary: each foreground structure's volume in mL (area in mm² for a 2D label
map), counted from the label map and its spacing."""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.core.findings import rounded
from medlens.tasks.segmentation.prediction import SegmentationPrediction

SIZE_DIGITS = 4  # decimals of volumes (mL) and areas (mm²), as in the prediction's own sizes


def segmentation_findings(prediction: SegmentationPrediction, bundle: object = None) -> list[dict[str, Any]]:
    """One ``volume`` (3D) or ``area`` (2D) finding per foreground class, with its voxel count and voxel size.

    ``segment`` is the class's label index, which is also its segment number in the DICOM SEG.

    ``bundle`` is the task contract's second argument; this task's findings need nothing from it.
    """
    labels = prediction.labels
    counts = np.bincount(labels.array[0].ravel().astype(np.int64), minlength=len(prediction.class_names))
    cell = float(np.prod(labels.spacing))  # mm³ per voxel, or mm² per pixel
    three_d = labels.spatial_dims == 3
    items = []
    for k, name in enumerate(prediction.class_names):
        if k == 0:
            continue
        n = int(counts[k])
        if three_d:
            voxel_ml = cell / 1000.0
            items.append(
                {"kind": "volume", "structure": name, "segment": k, "value": rounded(n * voxel_ml, SIZE_DIGITS),
                 "unit": "mL", "voxels": n, "voxel_volume_ml": float(f"{voxel_ml:.6g}")}
            )  # fmt: skip
        else:
            items.append(
                {"kind": "area", "structure": name, "segment": k, "value": rounded(n * cell, SIZE_DIGITS),
                 "unit": "mm2", "pixels": n, "pixel_area_mm2": float(f"{cell:.6g}")}
            )  # fmt: skip
    return items
