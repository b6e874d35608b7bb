"""The classification report: one self-contained ``report.html`` with the plots embedded, plus PNG files.

The HTML page needs nothing beside itself (no scripts, stylesheets, fonts or images from elsewhere), so it
can be mailed or archived with a run. The plots are also written beside it as ``roc.png``, ``pr.png``,
``reliability.png`` and ``confusion.png``. Every file is written atomically.
"""

from __future__ import annotations

import base64
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from medlens.core.atomic import atomic_file, write_text_atomic
from medlens.evaluate import plots
from medlens.evaluate.classification import METRIC_KEYS, PER_CLASS_KEYS, classification_curves

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
_TEMPLATE = "classification_report.html.j2"
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


def _cell(entry: dict[str, Any] | None) -> dict[str, str]:
    """A metric entry as display text: value and interval."""
    if not entry or entry.get("value") is None:
        return {"value": "n/a", "ci": ""}
    lo, hi = entry.get("ci95") or [None, None]
    ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return {"value": f"{entry['value']:.3f}", "ci": ci}


def _operating_label(metrics: dict[str, Any]) -> str:
    point = metrics["operating_point"]
    if point["threshold"] is None:
        return "arg-max"
    return f"threshold {point['threshold']:.3f} ({point['chosen_on']})"


def _context_rows(context: dict[str, Any] | None) -> list[tuple[str, str, bool]]:
    rows = []
    for key, value in (context or {}).items():
        if isinstance(value, dict | list | tuple):
            rows.append((str(key), json.dumps(value, indent=2, default=str), True))
        else:
            rows.append((str(key), str(value), False))
    return rows


def _render(values: dict[str, Any]) -> str:
    source = resources.files("medlens.evaluate").joinpath("templates", _TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(**values)


def write_classification_report(
    metrics: dict,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    out_dir: Path,
    *,
    title: str,
    task: str,
    class_names: list[str],
    context: dict | None = None,
) -> Path:
    """Write ``report.html`` (self-contained) and the plot PNGs into ``out_dir``.

    Args:
        metrics: the dict from :func:`~medlens.evaluate.classification.classification_metrics` for these
            same cases.
        y_true: the labels the metrics were computed on.
        y_prob: the probabilities the metrics were computed on.
        out_dir: folder to write into (created if missing; existing report files are replaced).
        title: the page title, e.g. ``"PneumoniaMNIST test set"``.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: class or label names.
        context: run information shown in its own section (model, plan, dataset, seeds, ...); nested values
            are shown as JSON.

    Returns:
        The path of ``report.html``.

    Example:
        >>> import tempfile
        >>> from medlens.evaluate.classification import classification_metrics
        >>> y, p = np.array([0, 1, 1, 0, 1]), np.array([0.2, 0.9, 0.6, 0.4, 0.3])
        >>> m = classification_metrics(y, p, task="binary", class_names=["no", "yes"], n_bootstrap=20)
        >>> path = write_classification_report(m, y, p, Path(tempfile.mkdtemp()), title="demo",
        ...                                    task="binary", class_names=["no", "yes"])
        >>> path.name
        'report.html'
    """
    out_dir = Path(out_dir)
    threshold = metrics["operating_point"]["threshold"]
    curves = classification_curves(y_true, y_prob, task=task, class_names=class_names, threshold=threshold)
    operating_label = _operating_label(metrics)
    images = {
        "roc": (
            plots.roc_png(curves, metrics),
            "ROC curves, with the AUC of each class"
            + ("; circle: operating threshold, square: threshold 0.5" if task == "binary" else ""),
        ),
        "pr": (
            plots.pr_png(curves, metrics),
            "Precision-recall curves, with the average precision of each class",
        ),
        "reliability": (
            plots.reliability_png(metrics["calibration"], metrics["ece"]),
            "Reliability diagram: " + metrics["calibration"]["compares"],
        ),
        "confusion": (
            plots.confusion_png(curves["confusion"], class_names, task, operating_label),
            "Confusion matrix (rows: true, columns: predicted), counts and row shares",
        ),
    }
    for key, (png, _) in images.items():
        with atomic_file(out_dir / f"{key}.png", "wb") as handle:
            handle.write(png)  # type: ignore[attr-defined]

    metric_rows = []
    for key in METRIC_KEYS:
        op, half = metrics[key], metrics["at_threshold_0.5"][key]
        notes = [n for n in (op.get("note"), half.get("note")) if n]
        metric_rows.append(
            {
                "label": _LABELS[key],
                "op": _cell(op),
                "half": _cell(half),
                "note": "; ".join(dict.fromkeys(notes)),
            }
        )
    class_rows = [
        {"name": name, "support": entry["support"], "cells": [_cell(entry[key]) for key in PER_CLASS_KEYS]}
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
    html = _render(
        {
            "title": title,
            "task": task,
            "n_cases": metrics["n_cases"],
            "class_names": class_names,
            "operating_label": operating_label,
            "bootstrap_text": bootstrap_text,
            "metric_rows": metric_rows,
            "averaging_text": _AVERAGING[task].format(positive=positive, negative=negative),
            "per_class_labels": [_LABELS[key] for key in PER_CLASS_KEYS],
            "class_rows": class_rows,
            "plots": [
                {"key": key, "data": base64.b64encode(png).decode("ascii"), "caption": caption}
                for key, (png, caption) in images.items()
            ],
            "context_rows": _context_rows(context),
            "method_text": (
                f"{bootstrap_text}; a resample on which a metric is undefined for a class (for instance no "
                "positive case, for AUC) is skipped. Values that cannot be defined on these cases are shown "
                "as n/a with the reason. Expected calibration error: equal-width bins, L1, comparing "
                f"{metrics['calibration']['compares']}."
            ),
        }
    )
    path = out_dir / REPORT_NAME
    write_text_atomic(path, html)
    logger.debug("wrote %s", path)
    return path
