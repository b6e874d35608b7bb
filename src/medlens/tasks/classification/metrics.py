"""Classification metrics with 95% bootstrap confidence intervals: binary, multiclass and multilabel tasks.

What is computed, and how (every figure matches scikit-learn; the tests check each one):

- **Predictions.** Binary: class 1 when ``p(class 1) >= threshold`` (the operating threshold chosen on
  validation with :func:`choose_threshold`, else 0.5). Multiclass: arg-max. Multilabel: each label positive
  when its probability ``>= threshold`` (0.5 by default).
- **Binary**: sensitivity, precision, F1 and AUC/AP of class 1; specificity is the recall of class 0.
- **Multiclass**: macro averages over classes, one-vs-rest: sensitivity (recall), specificity, precision, F1,
  ROC AUC and average precision. Accuracy is the fraction of cases whose arg-max is right.
- **Multilabel**: every metric per label, then the mean over labels (accuracy too, as MedMNIST does for
  ChestMNIST: the mean per-label accuracy, not the exact-match ratio).
- **Balanced accuracy**: the mean recall over the classes present (per label for multilabel), as
  ``balanced_accuracy_score``.
- **Undefined values.** A per-class value whose denominator is empty (no positive case, no predicted case,
  one class only for AUC) is ``null`` with a ``note``. Macro averages are over the classes where the value is
  defined (scikit-learn's ``zero_division=np.nan`` rule), and say so in a ``note`` when some were left out.
- **Confidence intervals.** 95% percentile bootstrap over cases (``n_bootstrap`` resamples with replacement,
  shared by all metrics), or over patients when ``groups`` says which cases share one (a patient's cases are
  drawn together; see :mod:`medlens.metrics.bootstrap`). A resample on which a metric is undefined for a class
  that is defined on the full data (a resample without positives, say) is skipped; with fewer than half the
  resamples left, no interval.
- **ECE**: see :mod:`medlens.metrics.calibration`.

Curve data for plots (ROC, PR, reliability, confusion matrices) is not part of the JSON-ready metrics; it
comes from :func:`classification_curves`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from medlens.core.errors import MedlensError
from medlens.metrics import bootstrap as bs
from medlens.metrics.calibration import (
    DEFAULT_N_BINS,
    calibration_pairs,
    expected_calibration_error,
    reliability_diagram,
)

logger = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "multilabel")
#: the top-level metric keys, in report order
METRIC_KEYS = (
    "auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "average_precision",
    "ece",
)
PER_CLASS_KEYS = ("sensitivity", "specificity", "precision", "f1", "auc", "average_precision")
_THRESHOLD_KEYS = ("sensitivity", "specificity", "precision", "f1", "accuracy")
_WHY_UNDEFINED = {
    "sensitivity": "no positive case",
    "specificity": "no negative case",
    "precision": "no case predicted positive",
    "f1": "no positive case and none predicted",
    "auc": "only one class present in y_true",
    "average_precision": "no positive case",
    "accuracy": "no case",
    "balanced_accuracy": "no class with cases",
}


class EvaluationInputError(MedlensError, ValueError):
    """Labels or probabilities given to an evaluation function cannot be used (shape, range, classes)."""


def _validate(
    y_true: np.ndarray, y_prob: np.ndarray, task: str, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Check and normalise inputs: binary gives ``(N,)`` labels and ``(N,)`` p(class 1)."""
    if task not in TASKS:
        raise EvaluationInputError(f"task {task!r} is not one of {', '.join(TASKS)}")
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, dtype=np.float64)
    if len(y_true) == 0 or len(y_true) != len(y_prob):
        raise EvaluationInputError(f"y_true has {len(y_true)} cases and y_prob {len(y_prob)}; need equal, > 0")
    if not np.all(np.isfinite(y_prob)) or y_prob.min() < -1e-6 or y_prob.max() > 1 + 1e-6:
        raise EvaluationInputError("y_prob must hold probabilities in [0, 1] (apply softmax/sigmoid first)")
    y_prob = np.clip(y_prob, 0.0, 1.0)
    if not np.all(np.isfinite(y_true.astype(np.float64))) or np.any(y_true != np.round(y_true)):
        raise EvaluationInputError("y_true must hold integer class indices (or 0/1 labels)")
    y_true = y_true.astype(np.int64)
    if task == "multilabel":
        if y_true.ndim != 2 or y_prob.shape != y_true.shape or y_true.shape[1] != len(class_names):
            raise EvaluationInputError(
                f"multilabel needs y_true and y_prob shaped (N, {len(class_names)}), got "
                f"{y_true.shape} and {y_prob.shape}"
            )
        if np.any((y_true != 0) & (y_true != 1)):
            raise EvaluationInputError("multilabel y_true must hold 0/1")
        return y_true, y_prob
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]  # MedMNIST labels come shaped (N, 1)
    if y_true.ndim != 1:
        raise EvaluationInputError(f"{task} y_true must be (N,) class indices, got shape {y_true.shape}")
    k = len(class_names)
    if task == "binary":
        if k != 2:
            raise EvaluationInputError(f"binary needs 2 class names, got {k}")
        if y_prob.ndim == 2 and y_prob.shape[1] == 2:
            y_prob = y_prob[:, 1]
        elif y_prob.ndim == 2 and y_prob.shape[1] == 1:
            y_prob = y_prob[:, 0]
        if y_prob.ndim != 1:
            raise EvaluationInputError(f"binary y_prob must be (N,) or (N, 2), got shape {y_prob.shape}")
    elif y_prob.ndim != 2 or y_prob.shape[1] != k:
        raise EvaluationInputError(f"multiclass y_prob must be (N, {k}), got shape {y_prob.shape}")
    if y_true.min() < 0 or y_true.max() >= k:
        raise EvaluationInputError(f"y_true holds class indices outside 0..{k - 1}")
    return y_true, y_prob


def predict_labels(y_prob: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Predictions from validated probabilities: ``p >= threshold`` (binary, multilabel) or arg-max."""
    if task == "multiclass":
        return y_prob.argmax(axis=1)
    return (y_prob >= threshold).astype(np.int64)


def truth_probability(y_true: np.ndarray, y_prob: np.ndarray, multilabel: bool) -> np.ndarray:
    """Per case (N,), the probability the model gave to the truth: of the true class, or for multi-label the
    smallest over labels of the probability of each label's true state (the case's worst-judged label)."""
    if multilabel:
        y = np.asarray(y_true, dtype=np.float64)  # (N, L) 0/1
        return np.min(np.where(y > 0.5, y_prob, 1.0 - y_prob), axis=1)
    index = np.asarray(y_true, dtype=np.int64).reshape(-1)  # (N,)
    return y_prob[np.arange(len(index)), index]


def choose_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Binary operating threshold on validation data: the point of the ROC curve maximising Youden's J.

    ``J = sensitivity + specificity - 1``. Every ROC point holds for a whole interval of thresholds between
    two neighbouring distinct scores; the threshold returned is 0.5 when 0.5 lies in the best interval, else
    its midpoint, so ``p >= t`` and ``p > t`` agree on these data. Tied best points: the one closest to 0.5.

    Args:
        y_true: ``(N,)`` 0/1 labels.
        y_prob: ``(N,)`` probability of class 1, or ``(N, 2)`` probabilities.

    Returns:
        The threshold; 0.5 (with a warning logged) when ``y_true`` holds one class only.

    Example:
        >>> choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
        0.25
    """
    y, p = _validate(y_true, y_prob, "binary", ["0", "1"])
    if len(np.unique(y)) < 2:
        logger.warning("choose_threshold: one class only in y_true; using 0.5")
        return 0.5
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    distinct = np.unique(p)[::-1]  # descending: ROC point i >= 1 predicts positive for p >= distinct[i - 1]
    bounds = np.concatenate([[1.0], distinct, [0.0]])  # point i holds for thresholds in (bounds[i+1], bounds[i]]
    j = tpr - fpr
    candidates = []
    for i in np.flatnonzero(j >= j.max() - 1e-12):
        lower, upper = float(bounds[i + 1]), float(bounds[i])
        candidates.append(0.5 if lower < 0.5 < upper else (lower + upper) / 2)
    return float(min(candidates, key=lambda t: (abs(t - 0.5), t)))


def _column_targets(y_true: np.ndarray, y_prob: np.ndarray, task: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest truth indicators and scores, ``(N, M)`` each (binary: both classes)."""
    if task == "multilabel":
        return y_true, y_prob
    truth = np.eye(k, dtype=np.int64)[y_true]  # (N, K) one-hot
    scores = np.stack([1.0 - y_prob, y_prob], axis=1) if task == "binary" else y_prob
    return truth, scores


def _one_hot_predictions(pred: np.ndarray, task: str, k: int) -> np.ndarray:
    return pred if task == "multilabel" else np.eye(k, dtype=np.int64)[pred]


def _raw(
    weights: np.ndarray,
    truth: np.ndarray,
    scores: np.ndarray,
    preds: dict[str, np.ndarray],
    calib: tuple[np.ndarray, np.ndarray],
    task: str,
) -> dict[str, np.ndarray]:
    """Per-column statistics under case weights ``(b, N)``: ``"<key>@<point>"`` arrays ``(b, M)``."""
    raw: dict[str, np.ndarray] = {}
    for name, pred in preds.items():
        counts = bs.weighted_confusion_counts(truth, pred, weights)
        for key, value in bs.rates_from_counts(counts).items():
            raw[f"{key}@{name}"] = value
        n = weights.sum(axis=1, keepdims=True).astype(np.float64)  # (b, 1)
        if task == "multilabel":
            raw[f"accuracy@{name}"] = (counts["tp"] + counts["tn"]) / n  # (b, L) per label
        else:
            raw[f"accuracy@{name}"] = counts["tp"].sum(axis=1, keepdims=True) / n  # (b, 1)
    m = truth.shape[1]
    ranked = [bs.weighted_rank_metrics(scores[:, c], truth[:, c], weights) for c in range(m)]
    raw["auc"] = np.stack([auc for auc, _ in ranked], axis=1)  # (b, M)
    raw["average_precision"] = np.stack([ap for _, ap in ranked], axis=1)  # (b, M)
    raw["ece"] = expected_calibration_error(*calib, n_bins=DEFAULT_N_BINS, weights=weights)[:, None]
    return raw


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the columns in ``mask``; NaN if any of them is NaN or none is in it."""
    count = mask.sum(axis=-1)
    total = np.where(mask, x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _summaries(raw: dict[str, np.ndarray], masks: dict[str, np.ndarray], task: str, point: str) -> dict:
    """Task-level metric values ``(b,)`` from per-column raw statistics."""

    def col(key: str) -> str:
        return f"{key}@{point}" if key in _THRESHOLD_KEYS else key

    out: dict[str, np.ndarray] = {}
    for key in ("sensitivity", "specificity", "precision", "f1", "auc", "average_precision"):
        if task == "binary":
            out[key] = raw[col(key)][:, 1]
        else:
            out[key] = _masked_mean(raw[col(key)], masks[col(key)])
    out["accuracy"] = _masked_mean(raw[col("accuracy")], masks[col("accuracy")])
    sens = raw[col("sensitivity")]
    if task == "multilabel":  # per label: mean recall over the classes present, then mean over labels
        both = np.stack([sens, raw[col("specificity")]], axis=-1)  # (b, L, 2)
        both_mask = np.stack([masks[col("sensitivity")], masks[col("specificity")]], axis=-1)  # (L, 2)
        out["balanced_accuracy"] = _masked_mean(_masked_mean(both, both_mask), np.any(both_mask, axis=-1))
    else:
        out["balanced_accuracy"] = _masked_mean(sens, masks[col("sensitivity")])
    out["ece"] = raw["ece"][:, 0]
    return out


def _entry(value: float, samples: np.ndarray | None, note: str = "") -> dict[str, Any]:
    """One ``{"value", "ci95"[, "note"]}`` entry, JSON-ready (``None`` for undefined)."""
    entry: dict[str, Any] = {"value": None if np.isnan(value) else float(value), "ci95": [None, None]}
    notes = [note] if note else []
    if entry["value"] is not None and samples is not None:
        entry["ci95"], ci_note = bs.percentile_ci(samples)
        if ci_note:
            notes.append(ci_note)
    if notes:
        entry["note"] = "; ".join(notes)
    return entry


def _macro_note(key: str, mask: np.ndarray, class_names: list[str], task: str) -> str:
    if task == "binary" or mask.all() or key in ("accuracy", "balanced_accuracy", "ece"):
        return ""
    missing = [name for name, ok in zip(class_names, mask, strict=True) if not ok]
    if not mask.any():
        return f"undefined for every class ({_WHY_UNDEFINED[key]})"
    return f"mean over {int(mask.sum())} of {len(mask)} classes; undefined for {', '.join(missing)}"


def _block(point: dict, boot: dict | None, masks: dict, task: str, class_names: list[str], name: str) -> dict[str, Any]:
    """The metric entries at one prediction point (the operating threshold or 0.5)."""
    values = _summaries(point, masks, task, name)
    samples = _summaries(boot, masks, task, name) if boot is not None else None
    block = {}
    for key in METRIC_KEYS:
        col = f"{key}@{name}" if key in _THRESHOLD_KEYS else key
        value = float(values[key][0])
        note = _WHY_UNDEFINED.get(key, "") if np.isnan(value) else ""
        if not note and col in masks:
            note = _macro_note(key, masks[col], class_names, task)
        block[key] = _entry(value, samples[key] if samples is not None else None, note)
    return block


def classification_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    task: str,
    class_names: list[str],
    threshold: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    threshold_source: str = "validation",
    groups: np.ndarray | None = None,
) -> dict:
    """Classification metrics with 95% bootstrap confidence intervals, as a JSON-ready dict.

    Args:
        y_true: binary/multiclass ``(N,)`` (or ``(N, 1)``) class indices; multilabel ``(N, L)`` 0/1.
        y_prob: binary ``(N, 2)`` or ``(N,)`` p(class 1); multiclass ``(N, K)`` softmax; multilabel
            ``(N, L)`` sigmoid.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: one name per class (binary: 2) or per label.
        threshold: binary (or multilabel, for every label) operating threshold, ``p >= threshold`` being
            positive; ``None`` means 0.5. Not allowed for multiclass (arg-max).
        n_bootstrap: bootstrap resamples; 0 gives no intervals (``ci95`` is ``[null, null]``).
        seed: seed of the bootstrap.
        threshold_source: recorded as ``operating_point.chosen_on`` when ``threshold`` is given.
        groups: ``(N,)`` patient group of each case (:func:`~medlens.metrics.bootstrap.group_index`): patients
            are resampled; ``None`` resamples cases.

    Returns:
        ``{auc, accuracy, balanced_accuracy, sensitivity, specificity, precision, f1, average_precision,
        ece}`` each ``{"value", "ci95": [lo, hi]}`` (plus ``"note"`` when something needs saying), at the
        operating point; ``operating_point``; ``at_threshold_0.5`` (same keys, the MedMNIST protocol);
        ``per_class`` (per class/label: the six per-class metrics as entries, and ``support``, the number
        of positive cases); ``confusion_matrix`` (rows true, columns predicted; multilabel: per label
        ``[[tn, fp], [fn, tp]]``); ``calibration`` (reliability-diagram bins); ``bootstrap``; ``n_cases``;
        ``class_names``; ``task``.

    Raises:
        EvaluationInputError: inputs of the wrong shape, range or class count.

    Example:
        >>> m = classification_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.6, 0.4]),
        ...                            task="binary", class_names=["normal", "pneumonia"], n_bootstrap=50)
        >>> m["auc"]["value"], m["accuracy"]["value"]
        (1.0, 1.0)
    """
    y_true, y_prob = _validate(y_true, y_prob, task, class_names)
    if task == "multiclass" and threshold is not None:
        raise EvaluationInputError("multiclass predictions are the arg-max; threshold must be None")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise EvaluationInputError(f"threshold {threshold} is outside [0, 1]")
    k, n = len(class_names), len(y_true)
    op = 0.5 if threshold is None else float(threshold)
    truth, scores = _column_targets(y_true, y_prob, task, k)
    pred_op, pred_half = predict_labels(y_prob, task, op), predict_labels(y_prob, task, 0.5)
    preds = {"op": _one_hot_predictions(pred_op, task, k), "half": _one_hot_predictions(pred_half, task, k)}
    calib = calibration_pairs(y_true, y_prob, task)

    point = _raw(np.ones((1, n), dtype=np.int64), truth, scores, preds, calib, task)
    masks = {key: ~np.isnan(value[0]) for key, value in point.items()}
    boot = None
    if n_bootstrap > 0:
        blocks = [_raw(w, truth, scores, preds, calib, task) for w in bs.resample_weights(n, n_bootstrap, seed, groups)]
        boot = {key: np.concatenate([b[key] for b in blocks]) for key in point}

    result: dict[str, Any] = _block(point, boot, masks, task, class_names, "op")
    result["operating_point"] = {
        "threshold": None if task == "multiclass" else op,
        "chosen_on": "argmax" if task == "multiclass" else ("default 0.5" if threshold is None else threshold_source),
    }
    result["at_threshold_0.5"] = _block(point, boot, masks, task, class_names, "half")
    result["per_class"] = {}
    for c, name in enumerate(class_names):
        entry: dict[str, Any] = {}
        for key in PER_CLASS_KEYS:
            col = f"{key}@op" if key in _THRESHOLD_KEYS else key
            value = float(point[col][0, c])
            note = _WHY_UNDEFINED[key] if np.isnan(value) else ""
            entry[key] = _entry(value, boot[col][:, c] if boot is not None else None, note)
        entry["support"] = int(truth[:, c].sum())
        result["per_class"][name] = entry
    result["confusion_matrix"] = confusion_matrix(y_true, pred_op, task, k).tolist()
    result["calibration"] = reliability_diagram(*calib, task=task, n_bins=DEFAULT_N_BINS)
    unit = bs.bootstrap_method(groups, n)
    result["bootstrap"] = {
        "n_resamples": n_bootstrap,
        "seed": seed,
        "method": f"95% percentile interval, {unit['unit']}s resampled with replacement",
        **unit,
    }
    result.update({"n_cases": n, "class_names": list(class_names), "task": task})
    return result


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, task: str, k: int) -> np.ndarray:
    """Confusion counts: ``(K, K)`` rows true, columns predicted; multilabel ``(L, 2, 2)`` per label."""
    if task == "multilabel":
        cells = y_true * 2 + y_pred  # (N, L) cell 0=tn 1=fp 2=fn 3=tp
        counts = np.stack([np.bincount(cells[:, i], minlength=4) for i in range(cells.shape[1])])
        return counts.reshape(-1, 2, 2)
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def classification_curves(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    task: str,
    class_names: list[str],
    threshold: float | None = None,
) -> dict[str, Any]:
    """Curve data for plots, kept out of the metrics JSON (arrays, not JSON-ready).

    Args:
        y_true: as for :func:`classification_metrics`.
        y_prob: as for :func:`classification_metrics`.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: class or label names.
        threshold: the operating threshold (binary, multilabel); ``None`` means 0.5.

    Returns:
        ``{"roc": {name: {"fpr", "tpr"}}, "pr": {name: {"recall", "precision", "prevalence"}},
        "reliability": ..., "confusion": {"operating": cm, "at_threshold_0.5": cm},
        "points": {"operating": (fpr, tpr), "at_threshold_0.5": (fpr, tpr)}}``; binary curves are for
        class 1 only, ``points`` is binary only, and classes with one class in y_true have no curves.
    """
    y_true, y_prob = _validate(y_true, y_prob, task, class_names)
    k = len(class_names)
    truth, scores = _column_targets(y_true, y_prob, task, k)
    columns = [1] if task == "binary" else list(range(k))
    curves: dict[str, Any] = {"roc": {}, "pr": {}, "points": {}}
    for c in columns:
        t = truth[:, c]
        if 0 < t.sum() < len(t):
            fpr, tpr, _ = roc_curve(t, scores[:, c])
            precision, recall, _ = precision_recall_curve(t, scores[:, c])
            curves["roc"][class_names[c]] = {"fpr": fpr, "tpr": tpr}
            curves["pr"][class_names[c]] = {"recall": recall, "precision": precision, "prevalence": t.mean()}
    op = 0.5 if threshold is None else float(threshold)
    curves["confusion"] = {
        "operating": confusion_matrix(y_true, predict_labels(y_prob, task, op), task, k),
        "at_threshold_0.5": confusion_matrix(y_true, predict_labels(y_prob, task, 0.5), task, k),
    }
    if task == "binary" and 0 < y_true.sum() < len(y_true):
        for name, cut in (("operating", op), ("at_threshold_0.5", 0.5)):
            pred = y_prob >= cut
            curves["points"][name] = (float(pred[y_true == 0].mean()), float(pred[y_true == 1].mean()))
    curves["reliability"] = reliability_diagram(*calibration_pairs(y_true, y_prob, task), task=task)
    return curves
