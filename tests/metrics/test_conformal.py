"""Split conformal prediction: the nominal coverage on synthetic data, and the same sets and intervals as MAPIE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from medlens.metrics.conformal import conformal_quantile, lac_scores, lac_sets


def _classification(rng: np.random.Generator, n: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(size=(n, k)) * 2
    prob = softmax(logits, axis=1)
    y = (prob.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)  # a class drawn from each case's probabilities
    return prob, np.minimum(y, k - 1)


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_reaches_the_nominal_level(level: float) -> None:
    """Over many calibration/test draws the mean coverage is at least the level and below level + 1/(n+1)."""
    rng = np.random.default_rng(0)
    n_cal, coverages = 200, []
    for _ in range(200):
        prob, y = _classification(rng, n_cal + 200)
        q = conformal_quantile(lac_scores(prob[:n_cal], y[:n_cal]), level)
        sets = lac_sets(prob[n_cal:], q)
        coverages.append(sets[np.arange(200), y[n_cal:]].mean())
    mean = float(np.mean(coverages))
    assert level - 0.005 <= mean <= level + 1 / (n_cal + 1) + 0.005


def test_too_few_cases_for_the_level_give_every_class() -> None:
    assert conformal_quantile(np.array([0.1, 0.2]), 0.9) == float("inf")
    assert lac_sets(np.array([[0.0, 1.0]]), 1.0).all()


def test_sets_equal_mapie_split_conformal_classifier() -> None:
    from mapie.classification import SplitConformalClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Fixed(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        """Probabilities already computed (a case is its row index)."""

        def __init__(self, probs: np.ndarray | None = None) -> None:
            self.probs = probs

        def fit(self, x: np.ndarray, y: np.ndarray) -> Fixed:
            self.classes_ = np.arange(self.probs.shape[1])  # type: ignore[union-attr]
            return self

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return self.probs[np.asarray(x)[:, 0].astype(int)]  # type: ignore[index]

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.predict_proba(x).argmax(axis=1)

    rng = np.random.default_rng(1)
    n = 300
    prob, y = _classification(rng, 2 * n)
    rows = np.arange(2 * n)[:, None]
    mapie = SplitConformalClassifier(
        estimator=Fixed(prob).fit(rows, y), confidence_level=0.9, conformity_score="lac", prefit=True
    )
    mapie.conformalize(rows[:n], y[:n])
    _, theirs = mapie.predict_set(rows[n:])
    ours = lac_sets(prob[n:], conformal_quantile(lac_scores(prob[:n], y[:n]), 0.9))
    assert np.array_equal(ours, theirs[:, :, 0])
    assert 1 < ours.sum(axis=1).mean() < 4  # not trivial sets


def test_interval_equals_mapie_split_conformal_regressor() -> None:
    from mapie.regression import SplitConformalRegressor
    from sklearn.base import BaseEstimator, RegressorMixin

    class Fixed(RegressorMixin, BaseEstimator):  # type: ignore[misc]
        def __init__(self, values: np.ndarray | None = None) -> None:
            self.values = values

        def fit(self, x: np.ndarray, y: np.ndarray) -> Fixed:
            self.n_features_in_ = 1
            return self

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.values[np.asarray(x)[:, 0].astype(int)]  # type: ignore[index]

    rng = np.random.default_rng(2)
    n = 250
    predicted = rng.normal(size=2 * n)
    truth = predicted + rng.standard_t(3, size=2 * n)
    rows = np.arange(2 * n)[:, None]
    mapie = SplitConformalRegressor(estimator=Fixed(predicted).fit(rows, truth), confidence_level=0.9, prefit=True)
    mapie.conformalize(rows[:n], truth[:n])
    _, theirs = mapie.predict_interval(rows[n:])
    half = conformal_quantile(np.abs(truth[:n] - predicted[:n]), 0.9)
    assert np.allclose(theirs[:, 0, 0], predicted[n:] - half) and np.allclose(theirs[:, 1, 0], predicted[n:] + half)
