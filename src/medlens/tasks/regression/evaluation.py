"""Measure a regressor on cases of a dataset: every case through ``bundle.predict``, metrics with intervals,
``predictions.csv`` and the report."""

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
) -> dict[str, Any]:
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.regression.metrics import regression_metrics
    from medlens.tasks.regression.report import write_regression_report
    from medlens.training.images import case_images

    r = bundle.plan.regression  # type: ignore[attr-defined]
    truth = target_values(dataset, cases)
    predictions = list(bundle.predict_many(case_images(dataset, cases, progress)))
    predicted = np.array([p.value for p in predictions], dtype=np.float64)  # type: ignore[attr-defined]
    metrics = regression_metrics(truth, predicted, n_bootstrap=n_bootstrap, unit=r.unit)
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
    context = {
        "model": f"{bundle.plan.model.name} {bundle.plan.model.kwargs}",
        "members": len(bundle.members),
        "dataset": f"{dataset.spec.name} ({len(cases)} cases)",
        "input": f"{bundle.plan.data.input_size} x {bundle.plan.data.channels}",
    }
    write_json(folder / "metrics.json", metrics)
    ids = [c.case_id for c in cases]
    write_regression_report(
        folder, metrics, truth, predicted, ids, name=r.target, unit=r.unit, title=title, context=context
    )
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "true", "predicted"])
        for case_id, t, p in zip(ids, truth, predicted, strict=True):
            writer.writerow([case_id, f"{t:.6g}", f"{p:.6g}"])
    return metrics
