"""Split conformal prediction: sets of classes (or intervals of values) that hold the truth for a chosen share of
cases, calibrated on validation (Vovk et al., 2005; Angelopoulos and Bates, 2021).

A *nonconformity score* says how badly a case's truth fits the prediction: for a classifier the LAC score
``1 - p(true class)`` (Sadinle et al., 2019), for a regressor the absolute residual ``|true - predicted|``. On
``n`` validation cases, the threshold ``q`` is the ``ceil((n + 1) * level)``-th smallest score. A new case's set is
every class whose score would be at most ``q`` (every class with ``p >= 1 - q``), its interval
``predicted ± q``. If validation and new cases are exchangeable, the set holds the truth with probability at
least ``level`` (and less than ``level + 1 / (n + 1)`` without ties). Sets can be empty (no class is
plausible enough) or hold several classes (the model cannot tell them apart): both are information.

Written by hand (a quantile and a comparison) rather than by keeping a fitted MAPIE object, because the bundle
stores only plain numbers (no pickled estimator travels with a model); the tests check the sets against
MAPIE's ``SplitConformalClassifier`` (LAC) and the interval against MAPIE's ``SplitConformalRegressor``.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_LEVEL = 0.9


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) * level)``-th smallest of ``n`` validation scores.

    Returns:
        The threshold; ``inf`` when there are too few cases for this level (``ceil((n + 1) * level) > n``), which
        makes every set hold every class and every interval unbounded.

    Example:
        >>> conformal_quantile(np.arange(1, 10) / 10, 0.8)  # n = 9: the 8th smallest of 0.1 .. 0.9
        0.8
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if not 0 < level < 1:
        raise ValueError(f"conformal level {level} is not between 0 and 1")
    rank = math.ceil((n + 1) * level)
    return float("inf") if rank > n else float(scores[rank - 1])


def lac_scores(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``1 - p(true class)`` per case: ``probabilities`` ``(N, K)``, ``targets`` ``(N,)`` class indices."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return 1.0 - probabilities[np.arange(len(probabilities)), np.asarray(targets, dtype=np.int64)]


def lac_sets(probabilities: np.ndarray, quantile: float) -> np.ndarray:
    """Prediction sets ``(N, K)`` bool: the classes with ``p >= 1 - quantile`` (a tolerance of 1e-9 for rounding)."""
    return np.asarray(probabilities, dtype=np.float64) >= 1.0 - quantile - 1e-9
