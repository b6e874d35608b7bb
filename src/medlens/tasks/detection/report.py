"""The detection report: COCO metrics with intervals, per class, the operating point, precision-recall curves per
class, and the pictures with the most missed boxes (predicted and true boxes drawn), on the shared template."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.reports.figures import colour, figure, png
from medlens.reports.html import Cell, Figure, Section, Table, metric_cell, write_report
from medlens.reports.pictures import boxes_png
from medlens.tasks.detection.metrics import ImageBoxes

N_WORST = 6
_HEADLINE = {"map": "mAP@[.5:.95]", "map50": "mAP@.5", "map75": "mAP@.75", "mar100": "AR@100"}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pr_png(curves: dict[str, dict[str, list[float]]], metrics: dict[str, Any]) -> bytes:
    fig = figure(6, 4.5)
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        ap = metrics["ap50_per_class"][name]["value"]
        ax.plot(curve["recall"], curve["precision"], color=colour(i), label=f"{name} (AP@.5 {_fmt(ap)})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return png(fig, dpi=90)


def write_detection_report(
    folder: Path,
    metrics: dict[str, Any],
    predictions: Sequence[Any],
    truths: list[ImageBoxes],
    misses: np.ndarray,
    class_names: list[str],
    *,
    title: str,
    extra: Sequence[Section] = (),
) -> Path:
    """``report.html``, ``pr.png`` and ``worst_<n>.png`` in ``folder`` (``extra`` sections at the end)."""
    worst = []
    for rank, index in enumerate(np.argsort(-misses, kind="stable")[:N_WORST]):
        if misses[index] == 0:
            break
        pred = predictions[index]
        kept = pred.kept
        picture = boxes_png(pred.pixels, kept.boxes, list(kept.labels), kept.scores, class_names, truths[index].boxes)
        worst.append(Figure(f"worst_{rank}", picture, f"{Path(pred.source).name}: {int(misses[index])} missed"))
    headline = [[Cell(label), metric_cell(metrics[key])] for key, label in _HEADLINE.items()]
    per_class = [
        [Cell(n), Cell(str(metrics["n_boxes"][n])), metric_cell(metrics["ap_per_class"][n]),
         metric_cell(metrics["ap50_per_class"][n])]
        for n in class_names
    ]  # fmt: skip
    op = metrics["operating_point"]
    sections = [
        Section("Metrics (95% bootstrap CI)", "metrics", tables=[Table(["metric", "value"], headline)]),
        Section("Per class", "per-class", tables=[Table(["class", "boxes", "AP@[.5:.95]", "AP@.5"], per_class)]),
        Section(
            "Operating point",
            "operating-point",
            text=[
                f"Detections scoring at least {op['score_threshold']:.3f} (chosen on validation), matched at IoU "
                f"{op['iou']}: precision {_fmt(op['precision'])}, recall {_fmt(op['recall'])}, F1 {_fmt(op['f1'])} "
                f"({op['tp']} found, {op['fp']} false, {op['fn']} missed)."
            ],
        ),
        Section(
            "Precision-recall curves (IoU 0.5)",
            "pr",
            figures=[Figure("pr", pr_png(metrics["_curves"], metrics), "Precision-recall per class at IoU 0.5")],
        ),
        Section(
            "Pictures with the most missed boxes",
            "worst",
            text=["Solid: predicted boxes at the operating score; dashed white: true boxes."],
            figures=worst,
        ),
        *extra,
    ]
    summary = [
        f"{metrics['n_cases']} pictures · classes: {', '.join(class_names)}",
        "COCO-style box metrics (101-point interpolated AP, up to 100 detections per picture), 95% bootstrap "
        f"intervals over {metrics['n_bootstrap']} resamples of the pictures.",
    ]
    return write_report(folder, title, summary, sections)
