"""Measure a segmentation bundle on cases of a dataset: each case through ``bundle.predict`` (in its own
geometry), every metric per case and class against its label map, case averages with BCa intervals (patients
resampled when cases share them), how well the case uncertainty score ranks the bad cases, subgroups, the
report."""

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
    from medlens.metrics.subgroups import Subgroups
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
    subgroups: Subgroups | None = None,
) -> dict[str, Any]:
    """``metrics.json``, ``per_case.csv`` and ``report.html`` (worst cases as overlays) in ``folder``."""
    from medlens.data.segmentation_cases import label_values_of, read_case
    from medlens.metrics.bootstrap import group_index
    from medlens.metrics.cases import worst_cases
    from medlens.metrics.subgroups import subgroup_metrics
    from medlens.reports.subgroups import subgroup_section
    from medlens.tasks.segmentation.metrics import case_metrics
    from medlens.tasks.segmentation.report import uncertainty_section, write_segmentation_report

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
        rows.append(
            {
                "case_id": case.case_id,
                **row,
                "mean_dice": float(np.mean(defined)) if defined else 1.0,
                "uncertainty": prediction.uncertainty_score,  # type: ignore[attr-defined]
                "member_disagreement": prediction.member_disagreement,  # type: ignore[attr-defined]
            }
        )
        kept[case.case_id] = (image, mask.array[0], pred)
        if len(kept) > WORST_SHOWN:  # keep only the worst few cases' pixels in memory
            by_id = {r["case_id"]: r["mean_dice"] for r in rows}
            del kept[max(kept, key=by_id.__getitem__)]
    patients = [c.patient_id for c in cases]

    def measure(index: np.ndarray) -> dict[str, Any]:
        return measure_cases([rows[i] for i in index], names, group_index([patients[i] for i in index]), n_bootstrap)

    metrics = measure(np.arange(len(cases)))
    extra = [uncertainty_section(metrics)]
    if subgroups is not None:
        metrics["subgroups"] = subgroup_metrics(
            subgroups, measure, headline="dice", higher_is_better=True, patients=patients
        )
        shown = [(f"dice_per_class.{n}", f"Dice {n}") for n in names[1:]] + [("hd95_mean", "HD95 (mm)")]
        extra.append(subgroup_section(metrics["subgroups"], shown))
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
    write_segmentation_report(folder, metrics, rows, worst, title, context, extra)
    log.info("mean Dice %.4f over %d cases", metrics["dice"]["value"] or float("nan"), len(cases))
    return metrics


def measure_cases(
    rows: list[dict[str, Any]], names: list[str], groups: np.ndarray | None, n_bootstrap: int
) -> dict[str, Any]:
    """Every metric of a set of cases (all of them, or a subgroup): case averages with intervals, and how well the
    case uncertainty score ranks the bad cases (AURC with loss 1 - mean Dice; Spearman's rho)."""
    from medlens.tasks.segmentation.metrics import summarize

    metrics = summarize([{k: r[k] for k in METRICS} for r in rows], names, n_bootstrap=n_bootstrap, groups=groups)
    metrics["uncertainty"] = uncertainty_figures(
        np.array([r["uncertainty"] for r in rows]), np.array([r["mean_dice"] for r in rows]), groups, n_bootstrap
    )
    metrics["uncertainty"]["mean_member_disagreement"] = float(np.mean([r["member_disagreement"] for r in rows]))
    metrics["interval_method"] = {"BCa": "every case average (Dice, IoU, HD95, ASD, NSD): scipy.stats.bootstrap",
                                  "percentile": "uncertainty.aurc"}  # fmt: skip
    return metrics


def uncertainty_figures(
    score: np.ndarray, dice: np.ndarray, groups: np.ndarray | None, n_bootstrap: int, seed: int = 0
) -> dict[str, Any]:
    """Does the case uncertainty score find the bad segmentations? AURC of referring the most uncertain cases
    (loss ``1 - mean Dice``), the AURC of a random order (the mean loss), Spearman's rho of score and Dice."""
    from scipy.stats import spearmanr

    from medlens.metrics import bootstrap as bs
    from medlens.metrics.selective import aurc, curve_points, risk_coverage

    loss = 1.0 - dice
    confidence = -score  # less uncertain, more confident
    samples = [aurc(confidence, loss, w) for w in bs.resample_weights(len(score), n_bootstrap, seed, groups)]
    rho = float(spearmanr(score, dice).statistic) if len(score) > 2 and np.ptp(score) > 0 and np.ptp(dice) > 0 else None
    return {
        "mean_score": float(score.mean()),
        "aurc": {
            **bs.interval_entry(float(aurc(confidence, loss)[0]), np.concatenate(samples) if samples else None),
            "random_ranking": float(loss.mean()),
            "loss": "1 - mean Dice of the cases kept",
        },
        "spearman_score_dice": None if rho is None or np.isnan(rho) else rho,
        "risk_coverage": curve_points(*risk_coverage(confidence, loss)),
    }


def _write_per_case(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["case_id", *[f"{m}_{n}" for m in METRICS for n in names], "uncertainty", "member_disagreement"]
        )
        for row in rows:
            values = [f"{v:.6g}" for m in METRICS for v in row[m]]
            writer.writerow([row["case_id"], *values, f"{row['uncertainty']:.6g}", f"{row['member_disagreement']:.6g}"])
