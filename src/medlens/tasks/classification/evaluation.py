"""Measure a classifier on cases of a dataset: every case through ``bundle.predict``, metrics with intervals,
each member alone, the report and ``predictions.csv``."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.outputs import write_json
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset
from medlens.tasks.classification.prediction import ClassificationPrediction, metric_task

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


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
    """Metrics at the validation-chosen operating point and at 0.5, each member alone, report and predictions."""
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.classification.metrics import classification_metrics, truth_probability
    from medlens.tasks.classification.report import write_classification_report
    from medlens.tasks.classification.training import targets_of
    from medlens.training.images import case_images

    predictions: list[ClassificationPrediction] = list(bundle.predict_many(case_images(dataset, cases, progress)))  # type: ignore[arg-type]
    names = bundle.class_names
    prob = np.array([[p.probabilities[n] for n in names] for p in predictions])  # (N, K)
    per_member = np.stack([p.member_probabilities for p in predictions], axis=1)  # (M, N, K)
    y = targets_of(dataset, cases).numpy()
    task = metric_task(names, bundle.plan.task == "multilabel")
    threshold = bundle.threshold if task == "binary" else None
    metrics = classification_metrics(
        y, prob, task=task, class_names=names, threshold=threshold, n_bootstrap=n_bootstrap
    )
    member_thresholds = bundle.info.get("member_thresholds") or [threshold] * len(per_member)
    metrics["seeds"] = per_member_metrics(y, per_member, task, names, member_thresholds)
    metrics["worst_cases"] = worst_cases(
        [c.case_id for c in cases], truth_probability(y, prob, task == "multilabel").tolist(),
        metric="probability of the true class",
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
        "operating threshold": f"{threshold} (chosen on validation)" if threshold is not None else "arg-max / 0.5",
    }
    clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
    write_json(folder / "metrics.json", clean)
    write_classification_report(metrics, y, prob, folder, title=title, task=task, class_names=names, context=context)
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "target", *[f"p_{n}" for n in names]])
        for case, target, p in zip(cases, y, prob, strict=True):
            writer.writerow(
                [case.case_id, ";".join(map(str, np.atleast_1d(target).astype(int))), *[f"{v:.6f}" for v in p]]
            )
    return clean


def per_member_metrics(
    y: np.ndarray, per_member: np.ndarray, task: str, class_names: list[str], thresholds: list[float | None]
) -> dict[str, Any]:
    """Each member alone, at its own operating threshold (chosen on validation) and at 0.5; mean and SD."""
    from medlens.tasks.classification.metrics import classification_metrics

    rows = []
    for probs, threshold in zip(per_member, thresholds, strict=True):
        m = classification_metrics(y, probs, task=task, class_names=class_names, threshold=threshold, n_bootstrap=0)
        at_half = m.get("at_threshold_0.5", m)
        rows.append(
            {
                "auc": m["auc"]["value"],
                "accuracy": m["accuracy"]["value"],
                "accuracy_at_0.5": at_half["accuracy"]["value"],
            }
        )
    summary: dict[str, Any] = {"n": len(rows), "per_seed": rows}
    for key in ("auc", "accuracy", "accuracy_at_0.5"):
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            summary[key] = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return summary
