"""Regression metrics with 95% bootstrap intervals: MAE, RMSE, R², Pearson r, and Bland-Altman agreement.

Every figure is a weighted statistic of the cases (weights 1 for the data as given), so one matrix product
evaluates it on all bootstrap resamples at once (the count vectors of :mod:`medlens.metrics.bootstrap`); the
tests check the point values against scikit-learn and scipy.

- MAE, RMSE: of the error ``predicted - true``.
- R²: ``1 - SSE / SST`` with SST about the mean of the true values (scikit-learn's ``r2_score``).
- Pearson r between predicted and true values.
- Bland-Altman: bias (mean error) and 95% limits of agreement ``bias ± 1.96 SD`` of the error.

Intervals: MAE, RMSE and bias are (functions of) means of per-case values and get BCa intervals
(``scipy.stats.bootstrap``, :func:`medlens.metrics.bootstrap.bca_entry`); R², Pearson r and the limits of
agreement keep the vectorised percentile bootstrap. Patients are resampled when cases share them (``groups``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.metrics import bootstrap as bs

KEYS = ("mae", "rmse", "r2", "pearson_r", "bias", "loa_low", "loa_high")
BCA_KEYS = ("mae", "rmse", "bias")
INTERVAL_METHOD = {
    "BCa": "mae, rmse, bias, interval_coverage, interval_width: means of per-case values (scipy.stats.bootstrap)",
    "percentile": "r2, pearson_r, loa_low, loa_high: vectorised percentile bootstrap",
}


def weighted_regression(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every figure under each row of case weights ``(b, N)``; each value ``(b,)``, NaN where undefined."""
    y, p = truth.astype(np.float64), predicted.astype(np.float64)
    w = weights.astype(np.float64)
    n = w.sum(axis=1)  # (b,)
    e = p - y

    def mean(v: np.ndarray) -> np.ndarray:
        return (w @ v) / n

    bias = mean(e)
    sd_e = np.sqrt(np.maximum(mean(e**2) - bias**2, 0.0) * n / np.maximum(n - 1, 1))  # sample SD
    y_mean, p_mean = mean(y), mean(p)
    var_y = mean(y**2) - y_mean**2
    var_p = mean(p**2) - p_mean**2
    cov = mean(y * p) - y_mean * p_mean
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(var_y > 1e-12 * np.maximum(1.0, y_mean**2), 1 - mean(e**2) / var_y, np.nan)
        r = np.where((var_y > 0) & (var_p > 0), cov / np.sqrt(np.maximum(var_y * var_p, 1e-300)), np.nan)
    return {
        "mae": mean(np.abs(e)),
        "rmse": np.sqrt(mean(e**2)),
        "r2": r2,
        "pearson_r": np.clip(r, -1.0, 1.0),
        "bias": bias,
        "loa_low": bias - 1.96 * sd_e,
        "loa_high": bias + 1.96 * sd_e,
    }


def regression_metrics(
    truth: np.ndarray,
    predicted: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    unit: str = "",
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Point values and 95% bootstrap intervals over cases (patients with ``groups``), as a JSON-ready dict.

    Example:
        >>> m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 1.9, 3.2, 3.8]), n_bootstrap=0)
        >>> round(m["mae"]["value"], 3), round(m["r2"]["value"], 3)
        (0.15, 0.98)
    """
    truth, predicted = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if truth.shape != predicted.shape or truth.ndim != 1 or not len(truth):
        raise ValueError(f"truth {truth.shape} and predictions {predicted.shape} must be equal, non-empty vectors")
    if not (np.all(np.isfinite(truth)) and np.all(np.isfinite(predicted))):
        raise ValueError("truth and predictions must be finite numbers")
    n = len(truth)
    point = weighted_regression(truth, predicted, np.ones((1, n)))
    samples: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    if n_bootstrap > 0:
        for block in bs.resample_weights(n, n_bootstrap, seed, groups):
            for key, values in weighted_regression(truth, predicted, block).items():
                samples[key].append(values)
    out: dict[str, Any] = {
        key: bs.interval_entry(float(point[key][0]), np.concatenate(samples[key]) if samples[key] else None)
        for key in KEYS
    }
    error = predicted - truth
    per_case = {"mae": (np.abs(error), None), "rmse": (error**2, np.sqrt), "bias": (error, None)}
    for key, (values, transform) in per_case.items():
        out[key] = bs.bca_entry(values, groups=groups, n_bootstrap=n_bootstrap, seed=seed, transform=transform)
    out.update(
        {
            "n_cases": n,
            "unit": unit,
            "truth_range": [float(truth.min()), float(truth.max())],
            "bootstrap": {"n_resamples": n_bootstrap, "seed": seed, **bs.bootstrap_method(groups, n)},
            "interval_method": INTERVAL_METHOD,
        }
    )
    return out
