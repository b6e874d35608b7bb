"""The classification report: metrics at the operating point and at 0.5, per class, curves, calibration.

Built as :class:`~medlens.reports.html.Section` values and written by the shared report template, with the
plots also written beside it as ``roc.png``, ``pr.png``, ``reliability.png`` and ``confusion.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.reports.html import Cell, Figure, Section, Table, context_section, metric_cell, write_report
from medlens.tasks.classification import plots
from medlens.tasks.classification.metrics import METRIC_KEYS, PER_CLASS_KEYS, classification_curves

_LABELS = {
    "auc": "ROC AUC",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity (recall)",
    "specificity": "specificity",
    "precision": "precision (PPV)",
    "f1": "F1",
    "average_precision": "average precision",
    "ece": "expected calibration error",
}
_AVERAGING = {
    "binary": "Sensitivity, precision, F1, AUC and average precision are for the positive class "
    "({positive}); specificity is the recall of {negative}.",
    "multiclass": "Predictions are the arg-max (no threshold, so both columns agree). Sensitivity, "
    "specificity, precision, F1, AUC and average precision are macro averages over classes, one-vs-rest.",
    "multilabel": "Every metric is computed per label at its threshold and averaged over labels (accuracy "
    "too: the mean per-label accuracy).",
}


def _operating_label(metrics: dict[str, Any]) -> str:
    point = metrics["operating_point"]
    if point["threshold"] is None:
        return "arg-max"
    return f"threshold {point['threshold']:.3f} ({point['chosen_on']})"


def write_classification_report(
    metrics: dict[str, Any],
    y_true: np.ndarray,
    y_prob: np.ndarray,
    out_dir: Path,
    *,
    title: str,
    task: str,
    class_names: list[str],
    context: dict[str, Any] | None = None,
    extra: Sequence[Section] = (),
) -> Path:
    """Write ``report.html`` (self-contained) and the plot PNGs into ``out_dir``.

    Args:
        metrics: :func:`~medlens.tasks.classification.metrics.classification_metrics` of these same cases.
        y_true: the labels the metrics were computed on.
        y_prob: the probabilities the metrics were computed on.
        out_dir: folder to write into.
        title: the page title, e.g. ``"PneumoniaMNIST test set"``.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: class or label names.
        context: run information shown in its own section (model, dataset, members, ...).
        extra: further sections, after the curves (calibration and uncertainty, subgroups).

    Returns:
        The path of ``report.html``.

    Example:
        >>> import tempfile
        >>> from medlens.tasks.classification.metrics import classification_metrics
        >>> y, p = np.array([0, 1, 1, 0, 1]), np.array([0.2, 0.9, 0.6, 0.4, 0.3])
        >>> m = classification_metrics(y, p, task="binary", class_names=["no", "yes"], n_bootstrap=20)
        >>> path = write_classification_report(m, y, p, Path(tempfile.mkdtemp()), title="demo",
        ...                                    task="binary", class_names=["no", "yes"])
        >>> path.name
        'report.html'
    """
    threshold = metrics["operating_point"]["threshold"]
    curves = classification_curves(y_true, y_prob, task=task, class_names=class_names, threshold=threshold)
    operating = _operating_label(metrics)
    figures = [
        Figure(
            "roc",
            plots.roc_png(curves, metrics),
            "ROC curves, with the AUC of each class"
            + ("; circle: operating threshold, square: threshold 0.5" if task == "binary" else ""),
        ),
        Figure(
            "pr", plots.pr_png(curves, metrics), "Precision-recall curves, with the average precision of each class"
        ),
        Figure(
            "reliability",
            plots.reliability_png(metrics["calibration"], metrics["ece"]),
            "Reliability diagram: " + metrics["calibration"]["compares"],
        ),
        Figure(
            "confusion",
            plots.confusion_png(curves["confusion"], class_names, task, operating),
            "Confusion matrix (rows: true, columns: predicted), counts and row shares",
        ),
    ]
    metric_rows = []
    for key in METRIC_KEYS:
        op, half = metrics[key], metrics["at_threshold_0.5"][key]
        notes = [n for n in (op.get("note"), half.get("note")) if n]
        metric_rows.append(
            [Cell(_LABELS[key]), metric_cell(op), metric_cell(half), Cell("; ".join(dict.fromkeys(notes)))]
        )
    unit = "label" if task == "multilabel" else "class"
    class_rows = [
        [Cell(name), Cell(str(entry["support"])), *[metric_cell(entry[key]) for key in PER_CLASS_KEYS]]
        for name, entry in metrics["per_class"].items()
    ]
    boot = metrics.get("bootstrap", {})
    n_boot = boot.get("n_resamples", 0)
    bootstrap_text = (
        f"95% percentile bootstrap intervals over cases ({n_boot} resamples, seed {boot.get('seed')})"
        if n_boot
        else "no bootstrap intervals computed"
    )
    negative, positive = [*class_names, "", ""][:2]
    sections = [
        Section(
            "Metrics",
            "metrics",
            text=[_AVERAGING[task].format(positive=positive, negative=negative)],
            tables=[
                Table(
                    ["metric", f"at {operating}", "at threshold 0.5 (MedMNIST protocol)", "note"],
                    metric_rows,
                    text_columns=("note",),
                )
            ],
        ),
        Section(
            f"Per {unit} (at {operating})",
            "per-class",
            tables=[Table([unit, "support", *[_LABELS[k] for k in PER_CLASS_KEYS]], class_rows)],
        ),
        Section("Curves and calibration", "plots", figures=figures),
        *extra,
    ]
    if context:
        sections.append(context_section(context))
    sections.append(
        Section(
            "Method",
            "method",
            text=[
                f"{bootstrap_text}; a resample on which a metric is undefined for a class (for instance no "
                "positive case, for AUC) is skipped. Values that cannot be defined on these cases are shown as "
                "n/a with the reason. Expected calibration error: equal-width bins, L1, comparing "
                f"{metrics['calibration']['compares']}."
            ],
        )
    )
    summary = [
        f"Task: {task} · {metrics['n_cases']} cases · {len(class_names)} {unit}{'s' if len(class_names) != 1 else ''}:"
        f" {', '.join(class_names)}",
        f"Operating point: {operating}. Intervals: {bootstrap_text}.",
    ]
    return write_report(Path(out_dir), title, summary, sections)


def uncertainty_section(metrics: dict[str, Any], task: str) -> Section:
    """Calibration before and after temperature scaling, selective prediction (AURC, referral) and conformal sets,
    with the risk-coverage curve."""
    from medlens.reports.uncertainty import risk_coverage_png

    referral = metrics["referral"]
    rows = [
        [Cell("ECE before temperature scaling"), metric_cell(metrics["ece_uncalibrated"]), Cell("")],
        [Cell("ECE after (served probabilities)"), metric_cell(metrics["ece"]),
         Cell(f"temperature {metrics['temperature']:g}, chosen on validation")],
        [Cell("AURC"), metric_cell(metrics["aurc"], 4),
         Cell(f"{metrics['aurc']['random_ranking']:.4f} if confidence ranked nothing (the error rate)")],
    ]  # fmt: skip
    threshold = referral["threshold"]
    if threshold is not None:
        target = referral["target_accuracy"]
        rows += [
            [Cell("share referred to a person"), metric_cell(referral["referred_share"]),
             Cell(f"{referral['n_referred']} cases with confidence below {threshold:.4g} (chosen on validation for "
                  f"accuracy {target:g} on the rest)")],
            [Cell("accuracy of the cases not referred"), metric_cell(referral["accuracy_of_rest"]), Cell("")],
            [Cell("accuracy of the referred cases"), metric_cell(referral["accuracy_of_referred"]), Cell("")],
        ]  # fmt: skip
    if "conformal_coverage" in metrics:
        level = metrics["conformal_level"]
        sizes = ", ".join(f"{k}: {v}" for k, v in metrics["conformal_set_sizes"].items())
        rows += [
            [Cell(f"conformal coverage (target {level:.0%})"), metric_cell(metrics["conformal_coverage"]),
             Cell(f"a class is in the set when p >= {1 - metrics['conformal_quantile']:.4g}")],
            [Cell("mean conformal set size"), metric_cell(metrics["conformal_set_size"]),
             Cell(f"sets of size {sizes}")],
        ]  # fmt: skip
    kept = None
    if threshold is not None and referral["referred_share"]["value"] is not None:
        kept = 1.0 - referral["referred_share"]["value"]
    figure = Figure(
        "risk_coverage",
        risk_coverage_png(metrics["risk_coverage"], metrics["aurc"], referral_coverage=kept),
        "Risk-coverage curve: the error rate of the cases answered when the least confident are referred",
    )
    text = [
        "Probabilities are calibrated by temperature scaling (one temperature, fitted on validation). Confidence is "
        "the probability of the label given"
        + (" (multi-label: of the least sure label; an error: any label wrong)" if task == "multilabel" else "")
        + ". Intervals: ECE and AURC percentile bootstrap; shares, accuracies and conformal figures BCa."
    ]
    table = Table(["figure", "value (95% CI)", "note"], rows, text_columns=("note",))
    return Section("Calibration and uncertainty", "uncertainty", text=text, tables=[table], figures=[figure])
