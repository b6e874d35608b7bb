"""Measure a classifier on cases of a dataset: every case through ``bundle.predict``, metrics with intervals
(patients resampled when cases share them), calibration before and after temperature scaling, selective
prediction and conformal sets, each member alone, per subgroup when asked, the report and ``predictions.csv``."""

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
from medlens.tasks.classification.config import plan_of
from medlens.tasks.classification.prediction import ClassificationPrediction, metric_task

if TYPE_CHECKING:
    from medlens.metrics.subgroups import Subgroups
    from medlens.models.bundle import Bundle

#: how each interval of metrics.json is made (see medlens.metrics.bootstrap)
INTERVAL_METHOD = {
    "percentile": "auc, average_precision, accuracy, balanced_accuracy, sensitivity, specificity, precision, f1, "
    "ece, ece_uncalibrated, aurc (and per class): vectorised percentile bootstrap",
    "BCa": "conformal_coverage, conformal_set_size, referral shares and accuracies: means of per-case values, "
    "bias-corrected and accelerated (scipy.stats.bootstrap)",
}
#: the metric compared between subgroups
HEADLINE = "auc"


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
    """Metrics at the validation-chosen operating point and at 0.5, calibration, referral and conformal figures,
    each member alone, per subgroup (with ``subgroups``), report and predictions."""
    from medlens.metrics.bootstrap import group_index
    from medlens.metrics.cases import worst_cases
    from medlens.metrics.subgroups import subgroup_metrics
    from medlens.reports.subgroups import subgroup_section
    from medlens.tasks.classification.attention import attention_section, attention_summary
    from medlens.tasks.classification.metrics import truth_probability
    from medlens.tasks.classification.report import uncertainty_section, write_classification_report
    from medlens.tasks.classification.training import targets_of
    from medlens.tasks.classification.uncertainty import calibration_of
    from medlens.training.images import case_images

    predictions: list[ClassificationPrediction] = list(bundle.predict_many(case_images(dataset, cases, progress)))  # type: ignore[arg-type]
    names = bundle.class_names
    prob = np.array([[p.probabilities[n] for n in names] for p in predictions])  # (N, K)
    uncalibrated = np.array([[p.uncalibrated_probabilities[n] for n in names] for p in predictions])  # (N, K)
    per_member = np.stack([p.member_probabilities for p in predictions], axis=1)  # (M, N, K)
    y = targets_of(dataset, cases).numpy()
    task = metric_task(names, plan_of(bundle).multilabel)
    threshold = bundle.threshold if task == "binary" else None
    member_thresholds = bundle.info.get("member_thresholds") or [threshold] * len(per_member)
    patients = [c.patient_id for c in cases]
    calibration = calibration_of(bundle)

    def measure(index: np.ndarray) -> dict[str, Any]:
        return measure_cases(
            y[index], prob[index], uncalibrated[index], per_member[:, index],
            task=task, class_names=names, threshold=threshold, member_thresholds=member_thresholds,
            calibration=calibration, groups=group_index([patients[i] for i in index]), n_bootstrap=n_bootstrap,
        )  # fmt: skip

    metrics = measure(np.arange(len(cases)))
    metrics["worst_cases"] = worst_cases(
        [c.case_id for c in cases], truth_probability(y, prob, task == "multilabel").tolist(),
        metric="probability of the true class",
    )  # fmt: skip
    metrics["model"] = {
        "name": bundle.plan.model.name,
        "members": len(bundle.members),
        "input_size": bundle.plan.data.input_size,
    }
    extra = [uncertainty_section(metrics, task)]
    attention = attention_section(predictions, y, names, [c.case_id for c in cases])  # networks that expose it
    if attention is not None:
        metrics["slice_attention"] = attention_summary(predictions, y, names)
        extra.append(attention)
    if subgroups is not None:
        metrics["subgroups"] = subgroup_metrics(
            subgroups, measure, headline=HEADLINE, higher_is_better=True, patients=patients
        )
        shown = [("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                 ("ece", "ECE"), ("conformal_coverage", "conformal coverage")]  # fmt: skip
        extra.append(subgroup_section(metrics["subgroups"], shown))
    context = {
        "model": f"{bundle.plan.model.name} {bundle.plan.model.kwargs}",
        "members": len(bundle.members),
        "dataset": f"{dataset.spec.name} ({len(cases)} cases)",
        "input": f"{bundle.plan.data.input_size} x {bundle.plan.data.channels}",
        "operating threshold": f"{threshold} (chosen on validation)" if threshold is not None else "arg-max / 0.5",
        "temperature": f"{calibration.temperature:g} (chosen on validation)",
    }
    clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
    write_json(folder / "metrics.json", clean)
    write_classification_report(
        metrics, y, prob, folder, title=title, task=task, class_names=names, context=context, extra=extra
    )
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "target", *[f"p_{n}" for n in names], "refer", "confidence", "prediction_set"])
        for case, target, p, pred in zip(cases, y, prob, predictions, strict=True):
            writer.writerow(
                [case.case_id, ";".join(map(str, np.atleast_1d(target).astype(int))), *[f"{v:.6f}" for v in p],
                 int(pred.refer), "" if pred.confidence is None else f"{pred.confidence:.6f}",
                 "" if pred.prediction_set is None else ";".join(pred.prediction_set)]
            )  # fmt: skip
    return clean


def measure_cases(
    y: np.ndarray,
    prob: np.ndarray,
    uncalibrated: np.ndarray,
    per_member: np.ndarray,
    *,
    task: str,
    class_names: list[str],
    threshold: float | None,
    member_thresholds: list[float | None],
    calibration: Any,
    groups: np.ndarray | None,
    n_bootstrap: int,
) -> dict[str, Any]:
    """Every metric of a set of cases (all of them, or a subgroup): the same function for both."""
    from medlens.tasks.classification.metrics import classification_metrics
    from medlens.tasks.classification.uncertainty import uncertainty_metrics

    metrics = classification_metrics(
        y, prob, task=task, class_names=class_names, threshold=threshold, n_bootstrap=n_bootstrap, groups=groups
    )
    metrics.update(
        uncertainty_metrics(
            y,
            prob,
            uncalibrated,
            task=task,
            threshold=threshold,
            calibration=calibration,
            class_names=class_names,
            groups=groups,
            n_bootstrap=n_bootstrap,
        )
    )
    metrics["seeds"] = per_member_metrics(y, per_member, task, class_names, member_thresholds)
    metrics["interval_method"] = INTERVAL_METHOD
    return metrics


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
