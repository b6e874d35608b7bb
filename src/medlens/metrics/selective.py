"""Selective prediction: answer the cases the model is sure of, refer the others to a person.

Cases are ranked by a confidence (for a classifier the probability of the label it gives). Keeping the cases at
or above a confidence cut gives a *coverage* (the share kept) and a *selective risk* (the mean loss of the kept
cases: the error rate for 0/1 losses, ``1 - Dice`` for a segmentation). The risk-coverage curve has one point per
distinct confidence (tied cases are kept or referred together, so the curve does not depend on their order), and
the area under it, AURC (Geifman and El-Yaniv, 2017; Ding et al., 2020), is

    ``AURC = sum over distinct confidences c (share of cases with confidence c) * risk(keep confidence >= c)``,

which without ties is the familiar mean of the risk over the coverages ``1/N, 2/N, ..., 1``. Lower is better;
a model whose confidence does not rank its errors has AURC equal to its error rate.

The referral threshold is chosen on validation: the lowest confidence cut at which the kept cases reach a target
accuracy (the largest coverage that does); cases below it are referred. Written by hand, with case weights so
that one cumulative sum evaluates every bootstrap resample (:mod:`medlens.metrics.bootstrap`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: a referral threshold of 1.0 means: refer every case (no confidence cut reached the target on validation)
REFER_ALL = 1.0


def _ranked(confidence: np.ndarray, loss: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct confidence, highest first: (confidence, weight, cumulative weight, cumulative loss)."""
    order = np.argsort(-confidence, kind="stable")
    c = confidence[order]
    w = weights[:, order].astype(np.float64)  # (b, N)
    wl = w * loss[order][None, :]  # (b, N)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(c)) + 1])  # first index of each tie group
    group_w = np.add.reduceat(w, starts, axis=1)  # (b, G)
    group_l = np.add.reduceat(wl, starts, axis=1)  # (b, G)
    return c[starts], group_w, np.cumsum(group_w, axis=1), np.cumsum(group_l, axis=1)


def risk_coverage(
    confidence: np.ndarray, loss: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The risk-coverage curve, one point per distinct confidence, highest confidence first.

    Args:
        confidence: ``(N,)`` higher means surer.
        loss: ``(N,)`` per-case loss in [0, 1] (1 for an error, 0 for a right answer).
        weights: ``(b, N)`` case weights (bootstrap count vectors); ``None`` for the cases as given.

    Returns:
        ``(thresholds (G,), coverage (b, G), risk (b, G))``: keeping the cases with confidence >= threshold
        covers that share of the (weighted) cases with that mean loss; NaN risk where nothing is kept.
    """
    confidence, loss = np.asarray(confidence, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    weights = np.ones((1, len(confidence))) if weights is None else weights
    thresholds, _, cum_w, cum_l = _ranked(confidence, loss, weights)
    total = cum_w[:, -1:]  # (b, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return thresholds, cum_w / total, np.where(cum_w > 0, cum_l / np.maximum(cum_w, 1e-300), np.nan)


def aurc(confidence: np.ndarray, loss: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the risk-coverage curve per row of case weights (see the module notes); ``(b,)``.

    Example:
        >>> conf, err = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.0, 1.0, 0.0, 1.0])
        >>> float(aurc(conf, err)[0])  # risks 0, 1/2, 1/3, 2/4 at coverages 1/4 .. 4/4
        0.3333333333333333
    """
    confidence, loss = np.asarray(confidence, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    weights = np.ones((1, len(confidence))) if weights is None else weights
    _, group_w, cum_w, cum_l = _ranked(confidence, loss, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(cum_w > 0, cum_l / np.maximum(cum_w, 1e-300), 0.0)  # (b, G)
        return np.einsum("ij,ij->i", group_w, risk) / cum_w[:, -1]


def choose_referral_threshold(confidence: np.ndarray, correct: np.ndarray, target_accuracy: float) -> float:
    """The lowest confidence cut at which the cases kept (confidence >= cut) reach ``target_accuracy``.

    Cases below the cut are referred. ``0.0`` when all cases together reach the target (refer none);
    :data:`REFER_ALL` when no cut does, not even the most confident case alone.

    Example:
        >>> choose_referral_threshold(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 1]), 0.75)
        0.0
        >>> choose_referral_threshold(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 0]), 0.9)
        0.8
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    loss = 1.0 - np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        return REFER_ALL
    thresholds, _, risk = risk_coverage(confidence, loss)
    meets = np.flatnonzero(1.0 - risk[0] >= target_accuracy - 1e-12)
    if not len(meets):
        return REFER_ALL
    best = int(meets.max())  # the largest coverage that reaches the target
    return 0.0 if best == len(thresholds) - 1 else float(thresholds[best])


def refers(confidence: np.ndarray | float, threshold: float | None) -> np.ndarray:
    """Whether each case is referred: its confidence is below the threshold (every case at :data:`REFER_ALL`);
    none without a threshold (a bundle made before referral existed)."""
    c = np.asarray(confidence, dtype=np.float64)
    if threshold is None:
        return np.zeros(c.shape, dtype=bool)
    return (c < threshold) | (threshold >= REFER_ALL)


def curve_points(thresholds: np.ndarray, coverage: np.ndarray, risk: np.ndarray, limit: int = 200) -> dict[str, Any]:
    """A JSON-ready risk-coverage curve with at most ``limit`` points (evenly spaced in coverage)."""
    cov, rk = coverage[0], risk[0]
    keep = np.unique(np.searchsorted(cov, np.linspace(0, 1, limit), side="left").clip(0, len(cov) - 1))
    return {
        "coverage": [round(float(v), 6) for v in cov[keep]],
        "risk": [None if np.isnan(v) else round(float(v), 6) for v in rk[keep]],
        "confidence": [round(float(v), 6) for v in thresholds[keep]],
    }
