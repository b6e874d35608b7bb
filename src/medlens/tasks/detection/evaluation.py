"""Measure a detector on cases of a dataset: each picture through ``bundle.predict``, COCO metrics with
bootstrap intervals over images, the operating point, ``coco_results.json`` and the report."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.core.outputs import write_json
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


def _pictures(dataset: Dataset, cases: Sequence[Case], progress: ProgressFn | None) -> Iterator[Image]:
    from medlens.io import read_image

    for case in tracked(cases, progress, "detecting"):
        path = dataset.image_paths(case)[0]
        if not path.is_file():
            raise InputError(path, f"image of case {case.case_id} missing")
        image = read_image(path)
        image.meta["source"] = str(dataset.image_paths(case)[0])  # named in errors
        yield image


def evaluate(
    bundle: Bundle,
    dataset: Dataset,
    cases: Sequence[Case],
    folder: Path,
    *,
    n_bootstrap: int,
    title: str,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    from medlens.data.boxes import read_boxes
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.detection.metrics import ImageBoxes, detection_metrics, misses_per_image, operating_point
    from medlens.tasks.detection.prediction import DetectionPrediction, coco_results
    from medlens.tasks.detection.report import write_detection_report

    predictions: list[DetectionPrediction] = list(bundle.predict_many(_pictures(dataset, cases, progress)))  # type: ignore[arg-type]
    preds = [p.candidates for p in predictions]
    truths = []
    for case in cases:
        boxes, labels, _ = read_boxes(dataset, case)
        truths.append(ImageBoxes(boxes.astype(np.float64), labels))
    names = bundle.class_names
    metrics = detection_metrics(preds, truths, names, n_bootstrap=n_bootstrap)
    score = float(bundle.threshold if bundle.threshold is not None else 0.5)
    metrics["n_cases"] = len(cases)
    metrics["operating_point"] = operating_point(preds, truths, len(names), score)
    metrics["model"] = {
        "name": bundle.plan.model.name,
        "members": len(bundle.members),
        "input_size": bundle.plan.data.input_size,
    }
    misses = misses_per_image(preds, truths, len(names), score)
    metrics["worst_cases"] = worst_cases(
        [c.case_id for c in cases], misses.tolist(), metric="objects missed", higher_is_worse=True,
        details=[{"objects": len(t.labels)} for t in truths],
    )  # fmt: skip
    clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
    write_json(folder / "metrics.json", clean)
    (folder / "coco_results.json").write_text(json.dumps(coco_results(predictions, [c.case_id for c in cases])))
    write_detection_report(folder, metrics, predictions, truths, misses, names, title=title)
    return clean
