"""Measure a regressor on cases of a dataset: every case through ``bundle.predict``, metrics with intervals
(patients resampled when cases share them), the conformal interval's coverage and width, the members' spread,
per subgroup when asked, ``predictions.csv`` and the report."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.outputs import write_json
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset

if TYPE_CHECKING:
    from medlens.metrics.subgroups import Subgroups
    from medlens.models.bundle import Bundle


def target_values(dataset: Dataset, cases: Sequence[Case]) -> np.ndarray:
    """The cases' true values (N,), checked to be finite numbers."""
    from medlens.core.errors import InputError

    values = []
    for case in cases:
        try:
            value = float(case.target)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            raise InputError(
                dataset.root / dataset.spec.manifest, f"case {case.case_id}: target {case.target!r} is not a number"
            )
        values.append(value)
    return np.array(values, dtype=np.float64)


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
    from medlens.metrics.bootstrap import group_index
    from medlens.metrics.cases import worst_cases
    from medlens.metrics.subgroups import subgroup_metrics
    from medlens.reports.subgroups import subgroup_section
    from medlens.tasks.regression.metrics import regression_metrics
    from medlens.tasks.regression.report import uncertainty_section, write_regression_report
    from medlens.training.images import case_images

    r = bundle.plan.regression  # type: ignore[attr-defined]
    truth = target_values(dataset, cases)
    predictions = list(bundle.predict_many(case_images(dataset, cases, progress)))
    predicted = np.array([p.value for p in predictions], dtype=np.float64)  # type: ignore[attr-defined]
    spread = np.array([p.member_sd if p.member_sd is not None else np.nan for p in predictions])  # type: ignore[attr-defined]
    intervals = [p.interval for p in predictions]  # type: ignore[attr-defined]
    level = predictions[0].interval_level  # type: ignore[attr-defined]
    patients = [c.patient_id for c in cases]

    def measure(index: np.ndarray) -> dict[str, Any]:
        groups = group_index([patients[i] for i in index])
        m = regression_metrics(truth[index], predicted[index], n_bootstrap=n_bootstrap, unit=r.unit, groups=groups)
        m.update(uncertainty_figures(truth[index], predicted[index], spread[index], [intervals[i] for i in index],
                                     level, groups, n_bootstrap))  # fmt: skip
        return m

    metrics = measure(np.arange(len(cases)))
    metrics["target"] = r.target
    pairs = [
        {"true": round(float(t), 4), "predicted": round(float(p), 4)} for t, p in zip(truth, predicted, strict=True)
    ]
    metrics["worst_cases"] = worst_cases(
        [c.case_id for c in cases], np.abs(predicted - truth).tolist(), metric="absolute error", higher_is_worse=True,
        details=pairs,
    )  # fmt: skip
    metrics["model"] = {
        "name": bundle.plan.model.name,
        "members": len(bundle.members),
        "input_size": bundle.plan.data.input_size,
    }
    extra = [uncertainty_section(metrics, r.unit)]
    if subgroups is not None:
        metrics["subgroups"] = subgroup_metrics(
            subgroups, measure, headline="mae", higher_is_better=False, patients=patients
        )
        shown = [("rmse", "RMSE"), ("bias", "bias"), ("r2", "R²"), ("interval_coverage", "interval coverage")]
        extra.append(subgroup_section(metrics["subgroups"], shown))
    context = {
        "model": f"{bundle.plan.model.name} {bundle.plan.model.kwargs}",
        "members": len(bundle.members),
        "dataset": f"{dataset.spec.name} ({len(cases)} cases)",
        "input": f"{bundle.plan.data.input_size} x {bundle.plan.data.channels}",
    }
    write_json(folder / "metrics.json", metrics)
    ids = [c.case_id for c in cases]
    write_regression_report(
        folder, metrics, truth, predicted, ids, name=r.target, unit=r.unit, title=title, context=context, extra=extra
    )
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "true", "predicted", "interval_low", "interval_high", "member_sd"])
        for case_id, t, p, iv, sd in zip(ids, truth, predicted, intervals, spread, strict=True):
            low, high = ("", "") if iv is None else (f"{iv[0]:.6g}", f"{iv[1]:.6g}")
            writer.writerow([case_id, f"{t:.6g}", f"{p:.6g}", low, high, "" if np.isnan(sd) else f"{sd:.6g}"])
    return metrics


def uncertainty_figures(
    truth: np.ndarray,
    predicted: np.ndarray,
    spread: np.ndarray,
    intervals: Sequence[list[float] | None],
    level: float | None,
    groups: np.ndarray | None,
    n_bootstrap: int,
) -> dict[str, Any]:
    """The conformal interval's coverage and mean width (BCa), and the members' spread against the error."""
    from scipy.stats import spearmanr

    from medlens.metrics import bootstrap as bs

    out: dict[str, Any] = {}
    if level is not None and all(iv is not None for iv in intervals):
        bounds = np.array(intervals, dtype=np.float64)  # (N, 2)
        covered = ((bounds[:, 0] <= truth) & (truth <= bounds[:, 1])).astype(np.float64)
        out["interval_level"] = level
        out["interval_coverage"] = bs.bca_entry(covered, groups=groups, n_bootstrap=n_bootstrap)
        out["interval_width"] = bs.bca_entry(bounds[:, 1] - bounds[:, 0], groups=groups, n_bootstrap=n_bootstrap)
    defined = ~np.isnan(spread)
    error = np.abs(predicted - truth)
    rho = None
    if defined.sum() > 2 and np.ptp(spread[defined]) > 0 and np.ptp(error[defined]) > 0:
        rho = float(spearmanr(spread[defined], error[defined]).statistic)
    out["member_sd"] = {
        "mean": float(spread[defined].mean()) if defined.any() else None,
        "spearman_with_abs_error": rho,
        "note": "the members' standard deviation per case (the ensemble's uncertainty); undefined with one member",
    }
    return out
