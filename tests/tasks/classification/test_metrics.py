"""Every classification metric against scikit-learn, on random and edge-case inputs, for all three tasks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medlens.tasks.classification.metrics import (
    METRIC_KEYS,
    EvaluationInputError,
    classification_metrics,
)
from prediction_cases import KINDS, make_case

TASKS = ("binary", "multiclass", "multilabel")
NAN = float("nan")


def _names(task: str, y: np.ndarray) -> list[str]:
    k = 2 if task == "binary" else (y.shape[1] if task == "multilabel" else 4)
    return [f"c{i}" for i in range(k)]


def _sk(fn, *args, **kwargs) -> float:
    """A scikit-learn metric, NaN when it is undefined (raises) on these data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return NAN


def _binary_reference(y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The binary metrics of one class (or label), from scikit-learn."""
    both = 0 < y.sum() < len(y)
    return {
        "auc": _sk(skm.roc_auc_score, y, p) if both else NAN,
        "average_precision": _sk(skm.average_precision_score, y, p) if y.sum() > 0 else NAN,
        "accuracy": _sk(skm.accuracy_score, y, pred),
        "balanced_accuracy": _sk(skm.balanced_accuracy_score, y, pred),
        "sensitivity": _sk(skm.recall_score, y, pred, pos_label=1, zero_division=np.nan),
        "specificity": _sk(skm.recall_score, y, pred, pos_label=0, zero_division=np.nan),
        "precision": _sk(skm.precision_score, y, pred, pos_label=1, zero_division=np.nan),
        "f1": _sk(skm.f1_score, y, pred, pos_label=1, zero_division=np.nan),
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


def reference(task: str, y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[dict, list[dict], np.ndarray]:
    """Top-level metrics, per-class metrics and confusion matrix, from scikit-learn."""
    if task == "binary":
        pred = (p >= threshold).astype(int)
        top = _binary_reference(y, p, pred)
        per_class = [_binary_reference((y == c).astype(int), [1 - p, p][c], (pred == c).astype(int)) for c in (0, 1)]
        return top, per_class, skm.confusion_matrix(y, pred, labels=[0, 1])
    if task == "multiclass":
        k = p.shape[1]
        pred = p.argmax(axis=1)
        per_class = [_binary_reference((y == c).astype(int), p[:, c], (pred == c).astype(int)) for c in range(k)]
        labels = list(range(k))
        top = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": _sk(skm.balanced_accuracy_score, y, pred),
            "sensitivity": _sk(skm.recall_score, y, pred, labels=labels, average="macro", zero_division=np.nan),
            "precision": _sk(skm.precision_score, y, pred, labels=labels, average="macro", zero_division=np.nan),
            "f1": _sk(skm.f1_score, y, pred, labels=labels, average="macro", zero_division=np.nan),
            "specificity": _nanmean([c["specificity"] for c in per_class]),
            "auc": _nanmean([c["auc"] for c in per_class]),
            "average_precision": _nanmean([c["average_precision"] for c in per_class]),
        }
        if len(np.unique(y)) == k:  # scikit-learn's own multiclass averages where they are defined
            top["average_precision_sklearn"] = skm.average_precision_score(y, p, average="macro")
            if np.allclose(p.sum(axis=1), 1.0):
                top["auc_sklearn"] = skm.roc_auc_score(y, p, multi_class="ovr")
        return top, per_class, skm.confusion_matrix(y, pred, labels=labels)
    pred = (p >= threshold).astype(int)
    per_class = [_binary_reference(y[:, c], p[:, c], pred[:, c]) for c in range(y.shape[1])]
    top = {key: _nanmean([c[key] for c in per_class]) for key in per_class[0]}
    for key, fn in (
        ("sensitivity", skm.recall_score),
        ("precision", skm.precision_score),
        ("f1", skm.f1_score),
    ):
        top[f"{key}_sklearn"] = _sk(fn, y, pred, average="macro", zero_division=np.nan)
    if all(0 < s < len(y) for s in y.sum(axis=0)):
        top["auc_sklearn"] = skm.roc_auc_score(y, p, average="macro")
        top["average_precision_sklearn"] = skm.average_precision_score(y, p, average="macro")
    return top, per_class, skm.multilabel_confusion_matrix(y, pred)


def _close(ours: float | None, theirs: float) -> bool:
    if np.isnan(theirs):
        return ours is None
    return ours is not None and abs(ours - theirs) < 1e-9


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_metrics_match_sklearn(task: str, kind: str) -> None:
    y, p = make_case(task, kind, seed=10 * TASKS.index(task) + KINDS.index(kind))
    threshold = None if task == "multiclass" else 0.42
    names = _names(task, y)
    m = classification_metrics(y, p, task=task, class_names=names, threshold=threshold, n_bootstrap=60, seed=1)
    top, per_class, cm = reference(task, y, p, 0.42)

    for key, theirs in top.items():
        ours = m[key.removesuffix("_sklearn")]
        assert _close(ours["value"], theirs), (key, ours, theirs)
    for c, name in enumerate(names):
        for key in ("sensitivity", "specificity", "precision", "f1", "auc", "average_precision"):
            assert _close(m["per_class"][name][key]["value"], per_class[c][key]), (name, key)
    assert np.array_equal(np.array(m["confusion_matrix"]), cm)
    assert m["n_cases"] == len(y) and m["task"] == task and m["class_names"] == names


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_threshold_half_figures_match_sklearn(task: str, kind: str) -> None:
    y, p = make_case(task, kind, seed=7)
    threshold = None if task == "multiclass" else 0.3
    m = classification_metrics(y, p, task=task, class_names=_names(task, y), threshold=threshold, n_bootstrap=0)
    top, _, _ = reference(task, y, p, 0.5)
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "auc"):
        assert _close(m["at_threshold_0.5"][key]["value"], top[key]), key


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_output_is_json_ready_and_complete(task: str, kind: str) -> None:
    y, p = make_case(task, kind, seed=3)
    m = classification_metrics(y, p, task=task, class_names=_names(task, y), n_bootstrap=40)
    json.dumps(m, allow_nan=False)  # no NaN, no numpy scalars
    for block in (m, m["at_threshold_0.5"]):
        for key in METRIC_KEYS:
            entry = block[key]
            assert set(entry) <= {"value", "ci95", "note"} and len(entry["ci95"]) == 2
            if entry["value"] is None:
                assert entry["note"] and entry["ci95"] == [None, None]
    for entry in m["per_class"].values():
        assert isinstance(entry["support"], int)


def test_support_and_operating_point() -> None:
    y, p = make_case("binary", "random")
    m = classification_metrics(y, p, task="binary", class_names=["neg", "pos"], threshold=0.3, n_bootstrap=0)
    assert m["operating_point"] == {"threshold": 0.3, "chosen_on": "validation"}
    assert m["per_class"]["pos"]["support"] == int(y.sum())
    assert m["per_class"]["neg"]["support"] == int((y == 0).sum())
    assert classification_metrics(y, p, task="binary", class_names=["n", "p"], n_bootstrap=0)["operating_point"] == {
        "threshold": 0.5,
        "chosen_on": "default 0.5",
    }
    y3, p3 = make_case("multiclass", "random")
    m3 = classification_metrics(y3, p3, task="multiclass", class_names=list("abcd"), n_bootstrap=0)
    assert m3["operating_point"] == {"threshold": None, "chosen_on": "argmax"}


def test_binary_accepts_two_column_probabilities_and_column_labels() -> None:
    y, p = make_case("binary", "random")
    one = classification_metrics(y, p, task="binary", class_names=["a", "b"], n_bootstrap=20)
    two = classification_metrics(
        y[:, None], np.stack([1 - p, p], 1), task="binary", class_names=["a", "b"], n_bootstrap=20
    )
    assert one == two


def test_macro_note_names_the_missing_class() -> None:
    y, p = make_case("multiclass", "missing_class")
    m = classification_metrics(y, p, task="multiclass", class_names=list("abcd"), n_bootstrap=0)
    assert "b" in m["auc"]["note"] and "3 of 4" in m["auc"]["note"]
    assert m["per_class"]["b"]["auc"]["value"] is None


@pytest.mark.parametrize(
    ("task", "y", "p", "names", "kwargs"),
    [
        ("binary", np.array([0, 1]), np.array([0.2, 1.3]), ["a", "b"], {}),
        ("binary", np.array([0, 2]), np.array([0.2, 0.3]), ["a", "b"], {}),
        ("binary", np.array([0, 1, 1]), np.array([0.2, 0.3]), ["a", "b"], {}),
        ("binary", np.array([0, 1]), np.array([0.2, np.nan]), ["a", "b"], {}),
        ("multiclass", np.array([0, 1]), np.full((2, 3), 1 / 3), ["a", "b"], {}),
        ("multiclass", np.array([0, 1]), np.full((2, 2), 0.5), ["a", "b"], {"threshold": 0.4}),
        ("multilabel", np.array([0, 1]), np.array([0.1, 0.2]), ["a"], {}),
        ("regression", np.array([0, 1]), np.array([0.1, 0.2]), ["a", "b"], {}),
    ],
)
def test_bad_input_is_a_clear_error(task, y, p, names, kwargs) -> None:
    with pytest.raises(EvaluationInputError):
        classification_metrics(y, p, task=task, class_names=names, **kwargs)
