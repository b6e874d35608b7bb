"""The operating threshold: Youden's J on the validation ROC curve, ties to the one closest to 0.5."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from medlens.tasks.classification.metrics import choose_threshold
from prediction_cases import make_case


def test_constructed_case_with_tied_best_points() -> None:
    # ROC points with J = 2/3 at thresholds in (0.6, 0.7] and (0.2, 0.4]; midpoints 0.65 and 0.3
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8])
    assert choose_threshold(y, p) == pytest.approx(0.65)


def test_half_is_kept_when_it_is_optimal() -> None:
    assert choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])) == 0.5


def test_two_column_probabilities() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert choose_threshold(y, np.stack([1 - p, p], 1)) == choose_threshold(y, p) == pytest.approx(0.25)


def test_one_class_falls_back_to_half() -> None:
    assert choose_threshold(np.zeros(5, dtype=int), np.linspace(0, 1, 5)) == 0.5


@pytest.mark.parametrize("kind", ["random", "ties", "perfect"])
def test_threshold_reaches_the_best_youden_index(kind: str) -> None:
    y, p = make_case("binary", kind, n=400, seed=11)
    t = choose_threshold(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    pred = p >= t
    j = pred[y == 1].mean() - pred[y == 0].mean()
    assert j == pytest.approx((tpr - fpr).max())
    assert np.array_equal(pred, p > t)  # the threshold lies strictly between scores (or is 0.5)
