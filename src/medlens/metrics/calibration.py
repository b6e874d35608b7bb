"""Expected calibration error (ECE) and reliability-diagram data.

Equal-width bins over [0, 1] (15 by default). Bin ``i`` holds confidences in ``[i/n, (i+1)/n)``; the last bin
is closed and also holds 1.0. What is compared with what depends on the task:

- **binary**: the predicted probability of class 1 against the observed frequency of class 1 in the bin (as
  torchmetrics' ``BinaryCalibrationError``);
- **multiclass**: the top-class confidence (largest probability) against the accuracy of the arg-max
  prediction in the bin (as torchmetrics' ``MulticlassCalibrationError``, Guo et al. 2017);
- **multilabel**: each label as a binary problem; the ECE is the mean over labels, and the reliability
  diagram pools all (case, label) pairs.

``ECE = sum_bins (n_bin / N) * |mean confidence - observed frequency|`` (the L1 norm). torchmetrics puts a
confidence of exactly 1.0 into a sixteenth bin of its own; here it belongs to the last bin, so the two differ
only when some confidence equals 1.0 exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_N_BINS = 15

_DESCRIPTION = {
    "binary": "predicted probability of class 1 vs observed frequency of class 1",
    "multiclass": "top-class confidence vs accuracy of the arg-max prediction",
    "multilabel": "per label: predicted probability vs observed frequency; mean over labels (diagram pools all labels)",
}


def calibration_pairs(y_true: np.ndarray, y_prob: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The confidences and 0/1 outcomes that calibration compares, one column per calibrated quantity.

    Args:
        y_true: validated truth (binary/multiclass ``(N,)`` class indices, multilabel ``(N, L)``).
        y_prob: validated probabilities (binary ``(N,)`` of class 1, otherwise ``(N, K)`` or ``(N, L)``).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.

    Returns:
        ``(confidence, outcome)``, both ``(N, M)``: ``M = 1`` for binary and multiclass, ``M = L`` labels.
    """
    if task == "binary":
        return y_prob[:, None].astype(np.float64), (y_true == 1)[:, None].astype(np.float64)
    if task == "multiclass":
        confidence = y_prob.max(axis=1)
        correct = y_prob.argmax(axis=1) == y_true
        return confidence[:, None].astype(np.float64), correct[:, None].astype(np.float64)
    return y_prob.astype(np.float64), y_true.astype(np.float64)


def bin_indices(confidence: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Equal-width bin of each confidence: ``[i/n, (i+1)/n)``, with 1.0 in the last bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)


def expected_calibration_error(
    confidence: np.ndarray,
    outcome: np.ndarray,
    n_bins: int = DEFAULT_N_BINS,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """L1 expected calibration error, averaged over columns, under each row of case weights.

    Args:
        confidence: ``(N, M)`` confidences in [0, 1].
        outcome: ``(N, M)`` 0/1 outcomes (class present, or prediction correct).
        n_bins: number of equal-width bins.
        weights: ``(b, N)`` bootstrap case weights; ``None`` means the data as given (``b = 1``).

    Returns:
        ``(b,)`` ECE per row of weights.

    Example:
        >>> conf = np.array([[0.1], [0.3], [0.8], [0.9]])
        >>> hit = np.array([[0.0], [1.0], [1.0], [1.0]])
        >>> round(float(expected_calibration_error(conf, hit, n_bins=2)[0]), 3)
        0.225
    """
    n, m = confidence.shape
    if weights is None:
        weights = np.ones((1, n))
    bins = bin_indices(confidence, n_bins)  # (N, M)
    columns = bins + n_bins * np.arange(m)[None, :]  # (N, M) a distinct column per (label, bin)
    onehot = np.zeros((n, m * n_bins))
    rows = np.repeat(np.arange(n), m)
    gap = (confidence - outcome).ravel()  # (N*M,) signed gap per case and column
    np.add.at(onehot, (rows, columns.ravel()), gap)
    sums = weights.astype(np.float64) @ onehot  # (b, M*n_bins) weighted gap per (label, bin)
    total = weights.sum(axis=1, keepdims=True).astype(np.float64)  # (b, 1)
    ece = np.abs(sums).reshape(-1, m, n_bins).sum(axis=2) / total  # (b, M)
    return ece.mean(axis=1)


def reliability_diagram(
    confidence: np.ndarray, outcome: np.ndarray, task: str, n_bins: int = DEFAULT_N_BINS
) -> dict[str, Any]:
    """Per-bin data of a reliability diagram, JSON-ready.

    Args:
        confidence: ``(N, M)`` confidences; all columns are pooled.
        outcome: ``(N, M)`` 0/1 outcomes.
        task: the task, recorded with a description of what is compared.
        n_bins: number of equal-width bins.

    Returns:
        ``{"n_bins", "compares", "bins": [{"lower", "upper", "count", "mean_confidence", "observed"}]}``;
        empty bins have ``null`` mean confidence and observed frequency.
    """
    conf, hit = confidence.ravel(), outcome.ravel()
    bins = bin_indices(conf, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=hit, minlength=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = []
    for i in range(n_bins):
        filled = count[i] > 0
        rows.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": int(count[i]),
                "mean_confidence": float(conf_sum[i] / count[i]) if filled else None,
                "observed": float(hit_sum[i] / count[i]) if filled else None,
            }
        )
    return {"n_bins": n_bins, "compares": _DESCRIPTION[task], "bins": rows}
