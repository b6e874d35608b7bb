"""The segmentation report: headline and per-class metrics with intervals, the worst cases as overlays (truth
beside prediction), and the per-case table, on the shared report template."""

from __future__ import annotations

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
) -> Path:
    """``report.html`` and ``worst_<n>.png`` in ``folder``."""
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
        context_section(context),
        Section(
            "Method",
            "method",
            text=[
                "Each case is predicted in its own geometry and compared with its label map voxel by voxel. HD95 and "
                "ASD from surface voxels (MONAI's definition); NSD with sub-voxel surfaces (MONAI "
                "compute_surface_dice, DeepMind's definition) at the tolerance of each class. Intervals: 95% "
                "percentile bootstrap over cases."
            ],
        ),
    ]
    summary = [f"{metrics['n_cases']} cases · {len(classes)} foreground classes: {', '.join(classes)}"]
    return write_report(folder, title, summary, sections)
