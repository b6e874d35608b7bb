"""Attention over slices in the evaluation report: which slices decided, for classifiers whose networks expose it
(:mod:`medlens.models.slice_attention`); nothing for the others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medlens.reports.html import Figure, Section
from medlens.tasks.classification.prediction import ClassificationPrediction

#: example cases drawn in the report (the most confident correct case of each class, then the worst error)
EXAMPLES = 3


def attention_summary(
    predictions: Sequence[ClassificationPrediction], y: np.ndarray, class_names: list[str]
) -> dict[str, Any] | None:
    """``metrics.json``'s ``slice_attention``: the slice axis, the mean weight per slice over the cases and per true
    class, and how concentrated attention is (the mean of each case's largest weight, against 1/S for uniform);
    None when the predictions carry no attention."""
    if not predictions or any(p.slice_attention is None for p in predictions):
        return None
    weights = np.array([p.slice_attention for p in predictions], dtype=np.float64)  # (N, S)
    out: dict[str, Any] = {
        "axis": predictions[0].slice_axis,
        "slices": int(weights.shape[1]),
        "mean_per_slice": [round(float(v), 6) for v in weights.mean(axis=0)],
        "mean_max_weight": round(float(weights.max(axis=1).mean()), 6),
        "uniform_weight": round(1 / weights.shape[1], 6),
    }
    if y.ndim == 1:  # single-label: per true class
        out["mean_per_slice_by_class"] = {
            name: [round(float(v), 6) for v in weights[y == k].mean(axis=0)]
            for k, name in enumerate(class_names)
            if (y == k).any()
        }
    return out


def _examples(predictions: Sequence[ClassificationPrediction], y: np.ndarray, class_names: list[str]) -> list[int]:
    if y.ndim != 1:
        return list(range(min(EXAMPLES, len(predictions))))
    truth = np.array([p.probabilities[class_names[int(t)]] for p, t in zip(predictions, y, strict=True)])
    chosen: list[int] = []
    for k in range(len(class_names)):
        idx = np.flatnonzero(y == k)
        if len(idx):
            chosen.append(int(idx[np.argmax(truth[idx])]))
    worst = int(np.argmin(truth))
    if worst not in chosen:
        chosen.append(worst)
    return chosen[: max(EXAMPLES, len(class_names))]


def attention_section(
    predictions: Sequence[ClassificationPrediction], y: np.ndarray, class_names: list[str], case_ids: Sequence[str]
) -> Section | None:
    """The report's "Attention over slices" section: mean attention per slice by true class, and example cases
    with their weight per slice beside their most attended slices; None without attention."""
    from medlens.reports.attention import mean_attention_png, slice_attention_png

    summary = attention_summary(predictions, y, class_names)
    if summary is None:
        return None
    weights = np.array([p.slice_attention for p in predictions], dtype=np.float64)
    axis = summary["axis"]
    groups = {name: weights[y == k] for k, name in enumerate(class_names)} if y.ndim == 1 else {"all cases": weights}
    figures = [
        Figure("slice_attention_mean", mean_attention_png(groups, axis), "Mean attention per slice, by true class")
    ]
    for i in _examples(predictions, y, class_names):
        p = predictions[i]
        flags = np.atleast_1d(y[i])
        truth = (
            class_names[int(y[i])]
            if y.ndim == 1
            else "; ".join(n for n, t in zip(class_names, flags, strict=True) if t)
        )
        label = ", ".join(p.label) if isinstance(p.label, list) else p.label
        title = f"{case_ids[i]}: true {truth}, predicted {label}"
        figures.append(
            Figure(
                f"slice_attention_{i}",
                slice_attention_png(p.slice_attention or [], p.top_slices, axis, title),
                f"{case_ids[i]} (true {truth}, predicted {label}): attention per slice beside its most attended slices",
            )
        )
    s = summary["slices"]
    text = [
        f"The network reads the volume as {s} slices along axis {axis} and weighs them by gated attention (the "
        "weights of a case sum to 1): the slices with large weights decided the answer. The mean largest weight of "
        f"a case is {summary['mean_max_weight']:.3f}, against {1 / s:.3f} if every slice counted the same.",
        "Attention says where the model looked, not why: it is not a test of faithfulness (see explain --score).",
    ]
    return Section("Attention over slices", "slice-attention", text=text, figures=figures)
