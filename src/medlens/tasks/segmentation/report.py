"""The segmentation report: headline and per-class metrics with intervals, the worst cases as overlays (truth
beside prediction), and the per-case table, on the shared report template."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.image import Image
from medlens.reports.html import Cell, Figure, Section, Table, context_section, metric_cell, text_cell, write_report
from medlens.reports.pictures import side_by_side_png


def write_segmentation_report(
    folder: Path,
    metrics: dict[str, Any],
    rows: list[dict[str, Any]],
    worst: list[tuple[str, Image, np.ndarray, np.ndarray]],
    title: str,
    context: dict[str, Any],
    extra: Sequence[Section] = (),
) -> Path:
    """``report.html`` and ``worst_<n>.png`` in ``folder`` (``extra`` sections after the per-case table)."""
    classes = list(metrics["dice_per_class"])
    tolerance = metrics["nsd_tolerance_mm"]
    per_class = [
        [
            Cell(name),
            metric_cell(metrics["dice_per_class"][name], 4),
            metric_cell(metrics["iou"][name], 4),
            metric_cell(metrics["hd95"][name], 2),
            metric_cell(metrics["asd"][name], 2),
            metric_cell(metrics["nsd"][name], 4),
            Cell(f"{tolerance[name]:g}"),
        ]
        for name in classes
    ]
    figures = [
        Figure(f"worst_{i}", side_by_side_png(image, truth, pred), f"{case_id}: truth (left), prediction (right)",
               width=480, pixelated=True)
        for i, (case_id, image, truth, pred) in enumerate(worst)
    ]  # fmt: skip
    per_case = [
        [Cell(row["case_id"]), *[c for j in range(len(classes)) for c in (text_cell(row["dice"][j]),
                                                                          text_cell(row["hd95"][j], 2))]]
        for row in rows
    ]  # fmt: skip
    sections = [
        Section(
            "Case-averaged metrics (95% bootstrap CI)",
            "metrics",
            text=[
                f"Mean Dice over foreground classes: {metric_cell(metrics['dice'], 4).value} "
                f"{metric_cell(metrics['dice'], 4).ci}"
            ],
            tables=[Table(["class", "Dice", "IoU", "HD95 (mm)", "ASD (mm)", "NSD", "NSD tolerance (mm)"], per_class)],
        ),
        Section("Worst cases", "worst", figures=figures),
        Section(
            "Per case",
            "per-case",
            tables=[Table(["case", *[f"{m} {n}" for n in classes for m in ("Dice", "HD95")]], per_case)],
        ),
        *extra,
        context_section(context),
        Section(
            "Method",
            "method",
            text=[
                "Each case is predicted in its own geometry and compared with its label map voxel by voxel. HD95 and "
                "ASD from surface voxels (MONAI's definition); NSD with sub-voxel surfaces (MONAI "
                "compute_surface_dice, DeepMind's definition) at the tolerance of each class. Intervals: 95% BCa "
                "bootstrap over cases (over patients when cases share one)."
            ],
        ),
    ]
    summary = [f"{metrics['n_cases']} cases · {len(classes)} foreground classes: {', '.join(classes)}"]
    return write_report(folder, title, summary, sections)


def uncertainty_section(metrics: dict[str, Any]) -> Section:
    """How well the case uncertainty score (mean voxel entropy over the predicted structures) finds bad cases."""
    from medlens.reports.uncertainty import risk_coverage_png

    u = metrics["uncertainty"]
    rho = u["spearman_score_dice"]
    rows = [
        [Cell("mean case uncertainty score (nats)"), text_cell(u["mean_score"])],
        [Cell("AURC, referring the most uncertain cases (loss 1 - Dice)"), metric_cell(u["aurc"], 4)],
        [Cell("AURC of a random order (the mean loss)"), text_cell(u["aurc"]["random_ranking"])],
        [Cell("Spearman rho, score vs mean Dice"), text_cell(rho)],
        [Cell("mean member disagreement (nats)"), text_cell(u["mean_member_disagreement"])],
    ]
    figure = Figure(
        "risk_coverage",
        risk_coverage_png(u["risk_coverage"], u["aurc"], risk_label="1 - mean Dice of the cases kept"),
        "Risk-coverage: the mean loss of the cases kept when the most uncertain are referred",
    )
    return Section(
        "Uncertainty",
        "uncertainty",
        text=[
            "Every prediction has a voxel uncertainty map (entropy of the averaged probabilities, saved beside the "
            "mask by predict) and a case score: its mean over the predicted structures and their doubtful margin. "
            "A useful score is high where Dice is low (negative rho, AURC below the random order)."
        ],
        tables=[Table(["figure", "value"], rows, text_columns=("figure",))],
        figures=[figure],
    )
