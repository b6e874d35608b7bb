"""Measure a segmentation bundle on cases of a dataset: each case through ``bundle.predict`` (in its own
geometry), every metric per case and class against its label map, case averages with intervals, the report."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.image import Image
from medlens.core.outputs import write_json
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)
WORST_SHOWN = 3
METRICS = ("dice", "iou", "hd95", "asd", "nsd")


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
    """``metrics.json``, ``per_case.csv`` and ``report.html`` (worst cases as overlays) in ``folder``."""
    from medlens.data.segmentation_cases import label_values_of, read_case
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.segmentation.metrics import case_metrics, summarize
    from medlens.tasks.segmentation.report import write_segmentation_report

    seg = bundle.plan.segmentation  # type: ignore[attr-defined]
    names = bundle.class_names
    tolerances = seg.nsd_tolerances(len(names) - 1)
    values = label_values_of(dataset.spec.source)
    rows: list[dict[str, Any]] = []
    kept: dict[str, tuple[Image, np.ndarray, np.ndarray]] = {}
    seconds = 0.0
    for case in tracked(cases, progress, "segmenting"):
        image, mask = read_case(
            dataset.image_paths(case), dataset.root / case.target, dataset.spec.spatial_dims, dataset.num_classes,
            case.case_id, values,
        )  # fmt: skip
        image.meta["source"] = str(dataset.image_paths(case)[0])  # named in errors
        start = time.perf_counter()
        prediction = bundle.predict(image)
        seconds += time.perf_counter() - start
        pred = prediction.labels.array[0]  # type: ignore[attr-defined]
        row = case_metrics(pred, mask.array[0], dataset.num_classes, image.spacing, tolerances)
        defined = [d for d in row["dice"] if d == d]
        rows.append({"case_id": case.case_id, **row, "mean_dice": float(np.mean(defined)) if defined else 1.0})
        kept[case.case_id] = (image, mask.array[0], pred)
        if len(kept) > WORST_SHOWN:  # keep only the worst few cases' pixels in memory
            by_id = {r["case_id"]: r["mean_dice"] for r in rows}
            del kept[max(kept, key=by_id.__getitem__)]
    metrics = summarize([{k: r[k] for k in METRICS} for r in rows], names, n_bootstrap=n_bootstrap)
    metrics["nsd_tolerance_mm"] = dict(zip(names[1:], tolerances, strict=True))
    metrics["seconds_per_case"] = round(seconds / len(cases), 4)
    metrics["members"] = len(bundle.members)
    metrics["keep_largest_component"] = seg.keep_largest_component
    metrics["worst_cases"] = worst_cases(
        [r["case_id"] for r in rows], [r["mean_dice"] for r in rows], metric="mean foreground Dice"
    )
    by_id = {r["case_id"]: r["mean_dice"] for r in rows}
    worst = [(cid, *kept[cid]) for cid in sorted(kept, key=by_id.__getitem__)]
    context = {
        "model": f"{bundle.plan.model.name}, {len(bundle.members)} member(s)",
        "dataset": f"{dataset.spec.name} ({len(cases)} cases)",
        "patch / spacing": f"{bundle.plan.data.input_size} at {seg.target_spacing} mm (RAS)",
        "empty-mask convention": "class absent from both: left out; from one: Dice 0, distances = image diagonal",
    }
    write_json(folder / "metrics.json", metrics)
    _write_per_case(folder / "per_case.csv", rows, names[1:])
    write_segmentation_report(folder, metrics, rows, worst, title, context)
    log.info("mean Dice %.4f over %d cases", metrics["dice"]["value"] or float("nan"), len(cases))
    return metrics


def _write_per_case(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", *[f"{m}_{n}" for m in METRICS for n in names]])
        for row in rows:
            writer.writerow([row["case_id"], *[f"{v:.6g}" for m in METRICS for v in row[m]]])
