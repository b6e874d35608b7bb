"""Predict with a bundle: the same preprocessing as training, for files and folders of any format."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.atomic import atomic_dir
from medlens.core.errors import InputError
from medlens.data.sources import is_image_file
from medlens.models.bundle import load_bundle

log = logging.getLogger(__name__)


def expand_inputs(inputs: Sequence[str | Path], spatial_dims: int = 2) -> list[Path]:
    """Files as given; folders expanded to their image files, except that for a 3D model a folder holding
    one multi-file DICOM series stays one input (the volume)."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise InputError(item, "no such file or folder")
        if item.is_file():
            found.append(item)
            continue
        files = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
        dicom = [p for p in files if p.suffix.lower() in {".dcm", ".dicom", ""}]
        if spatial_dims == 3 and dicom and len(dicom) == len(files) and _is_volume_folder(item):
            found.append(item)  # a series folder: one volume
        else:
            found.extend(files)
    if not found:
        raise InputError(Path(str(inputs[0])), "no image files found")
    return found


def _is_volume_folder(folder: Path) -> bool:
    from medlens.io import find_series

    series = find_series(folder)
    return len(series) == 1 and len(series[0].files) > 1


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    overwrite: bool = True,
    tta: bool = False,
    dicom_seg: bool = False,
) -> list[dict[str, Any]]:
    """Predict every input; write ``predictions.csv`` and one JSON per input into ``out``.

    Example:
        >>> predict("runs/pneumonia", ["xray.png"], "predictions")  # doctest: +SKIP
    """
    from medlens.evaluate.classification import predict_labels
    from medlens.io import read_image
    from medlens.transforms.preprocess import to_input
    from medlens.workflows.evaluate import metric_task

    bundle = load_bundle(run_dir)
    paths = expand_inputs(inputs, bundle.plan.spatial_dims)
    if bundle.plan.task == "segmentation":
        from medlens.workflows.segmentation import predict_segmentation

        return predict_segmentation(bundle, paths, out, tta=tta, dicom_seg=dicom_seg, overwrite=overwrite)
    if bundle.plan.task == "detection":
        from medlens.workflows.detection import predict_detection

        return predict_detection(bundle, paths, out, overwrite=overwrite)
    arrays = []
    for path in paths:
        image = read_image(path)
        arrays.append(to_input(image, bundle.plan.data, source=str(path)))
    prob, _ = bundle.predict_proba(torch.from_numpy(np.stack(arrays)))
    task = metric_task(bundle)
    threshold = bundle.threshold if (task == "binary" and bundle.threshold is not None) else 0.5
    labels = predict_labels(prob[:, 1] if task == "binary" else prob, task, threshold)
    rows = []
    for path, p, label in zip(paths, prob, labels, strict=True):
        if task == "multilabel":
            predicted: Any = [bundle.class_names[i] for i, flag in enumerate(np.atleast_1d(label)) if flag]
        else:
            predicted = bundle.class_names[int(label)]
        rows.append(
            {
                "input": str(path),
                "prediction": predicted,
                "probabilities": {n: round(float(v), 6) for n, v in zip(bundle.class_names, p, strict=True)},
                "threshold": threshold if task != "multiclass" else None,
            }
        )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with open(tmp / "predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "prediction", *[f"p_{n}" for n in bundle.class_names]])
            for row in rows:
                pred = ";".join(row["prediction"]) if isinstance(row["prediction"], list) else row["prediction"]
                writer.writerow([row["input"], pred, *row["probabilities"].values()])
        used: set[str] = set()
        for row in rows:
            stem = _unique_stem(Path(row["input"]), used)
            (tmp / f"{stem}.json").write_text(json.dumps(row, indent=2))
    return rows


def _unique_stem(path: Path, used: set[str]) -> str:
    stem = path.name.split(".")[0] or "input"
    candidate, i = stem, 1
    while candidate in used:
        candidate, i = f"{stem}_{i}", i + 1
    used.add(candidate)
    return candidate
