"""Measure a detector on cases of a dataset: each picture through ``bundle.predict``, COCO metrics with
bootstrap intervals over images (patients, when images share them), the operating point, the members' agreement
on the boxes, per subgroup when asked, ``coco_results.json`` and the report."""

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
    from medlens.metrics.subgroups import Subgroups
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
    subgroups: Subgroups | None = None,
) -> dict[str, Any]:
    from medlens.data.boxes import read_boxes
    from medlens.metrics.bootstrap import group_index
    from medlens.metrics.cases import worst_cases
    from medlens.metrics.subgroups import subgroup_metrics
    from medlens.reports.subgroups import subgroup_section
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
    score = float(bundle.threshold if bundle.threshold is not None else 0.5)
    patients = [c.patient_id for c in cases]

    def measure(index: np.ndarray) -> dict[str, Any]:
        chosen_preds, chosen_truths = [preds[i] for i in index], [truths[i] for i in index]
        groups = group_index([patients[i] for i in index])
        m = detection_metrics(chosen_preds, chosen_truths, names, n_bootstrap=n_bootstrap, groups=groups)
        m["n_cases"] = len(index)
        m["operating_point"] = operating_point(chosen_preds, chosen_truths, len(names), score)
        return m

    metrics = measure(np.arange(len(cases)))
    shares = [p.agreement[p._keep()] for p in predictions if p.agreement is not None]
    agreement = np.concatenate(shares) if shares else np.zeros(0)
    metrics["member_agreement"] = {
        "mean": float(agreement.mean()) if len(agreement) else None,
        "share_below_1": float((agreement < 1).mean()) if len(agreement) else None,
        "note": "per box at the operating score: the share of members that found it on their own",
    }
    extra = []
    if subgroups is not None:
        metrics["subgroups"] = subgroup_metrics(
            subgroups, lambda i: {k: v for k, v in measure(i).items() if not k.startswith("_")},
            headline="map50", higher_is_better=True, patients=patients,
        )  # fmt: skip
        extra.append(subgroup_section(metrics["subgroups"], [("map", "mAP@[.5:.95]"), ("mar100", "AR@100")]))
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
    write_detection_report(folder, metrics, predictions, truths, misses, names, title=title, extra=extra)
    return clean
