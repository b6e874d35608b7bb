"""Segmentation metrics per case and class, and their case average with 95% bootstrap intervals.

Per case and foreground class: Dice, IoU, the 95th-percentile Hausdorff distance (HD95), the average
symmetric surface distance (ASD) and the normalised surface Dice (NSD) at a tolerance in millimetres.
The definitions are MONAI's (surfaces are the voxels removed by one binary erosion; HD95 is the larger of
the two directed 95th percentiles; ASD the mean over both directions' distances; NSD without sub-voxel
areas), and the tests compare every value with MONAI's functions.

Written on scipy's Euclidean distance transform rather than by calling MONAI's five functions because one
pass over the two surfaces serves all three distance metrics (MONAI recomputes edges and distances per
metric and per call), and because the empty-mask conventions must be defined for a case average:

- class absent from both truth and prediction: every metric undefined (NaN), left out of the average;
- class present in only one of them: Dice, IoU and NSD are 0, and HD95 and ASD are the length of the
  image diagonal in millimetres (the largest distance possible), so a missed structure is penalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medlens.evaluate import bootstrap as bs

METRICS = ("dice", "iou", "hd95", "asd", "nsd")
LOWER_IS_BETTER = {"hd95", "asd"}


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface voxels of a binary mask: those one erosion removes (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each predicted surface voxel to the true surface, and from each true one back.

    Both masks must be non-empty. Work happens in the bounding box of the union, padded by one voxel.
    """
    union = pred | truth
    box = tuple(
        slice(max(0, int(idx.min()) - 1), int(idx.max()) + 2) for idx in np.nonzero(union)
    )  # per axis, the union's extent plus a margin
    p_surf, t_surf = surface(pred[box]), surface(truth[box])
    sampling = [float(s) for s in spacing]
    to_truth = ndimage.distance_transform_edt(~t_surf, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~p_surf, sampling=sampling)
    return to_truth[p_surf], to_pred[t_surf]


def binary_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float = 1.0
) -> dict[str, float]:
    """Dice, IoU, HD95, ASD and NSD of one binary structure (see the module notes for empty masks)."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    if n_pred == 0 and n_truth == 0:
        return dict.fromkeys(METRICS, float("nan"))
    intersection = int((pred & truth).sum())
    dice = 2 * intersection / (n_pred + n_truth)
    iou = intersection / (n_pred + n_truth - intersection)
    if n_pred == 0 or n_truth == 0:
        diagonal = float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(spacing, dtype=float)))
        return {"dice": dice, "iou": iou, "hd95": diagonal, "asd": diagonal, "nsd": 0.0}
    d_pred, d_truth = surface_distances(pred, truth, spacing)
    hd95 = max(float(np.percentile(d_pred, 95)), float(np.percentile(d_truth, 95)))
    asd = float(np.concatenate([d_pred, d_truth]).mean())
    within = (d_pred <= nsd_tolerance_mm).sum() + (d_truth <= nsd_tolerance_mm).sum()
    nsd = float(within / (d_pred.size + d_truth.size))
    return {"dice": dice, "iou": iou, "hd95": hd95, "asd": asd, "nsd": nsd}


def case_metrics(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, spacing: Sequence[float], nsd_tolerance_mm: float = 1.0
) -> dict[str, list[float]]:
    """Every metric for each foreground class (1..K-1) of one case's label maps (same shape, class indices).

    Example:
        >>> t = np.zeros((8, 8), np.uint8); t[2:6, 2:6] = 1
        >>> case_metrics(t, t, 2, (1.0, 1.0))["dice"]
        [1.0]
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the truth's {truth.shape}")
    rows: dict[str, list[float]] = {m: [] for m in METRICS}
    for k in range(1, n_classes):
        values = binary_metrics(pred == k, truth == k, spacing, nsd_tolerance_mm)
        for m in METRICS:
            rows[m].append(values[m])
    return rows


def summarize(
    per_case: Sequence[dict[str, list[float]]],
    class_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Case averages with 95% bootstrap intervals (cases resampled, the same resamples for every metric).

    Args:
        per_case: :func:`case_metrics` of each case.
        class_names: all class names, background first.
        n_bootstrap: resamples (0: no intervals).
        seed: seed of the resamples.

    Returns:
        ``dice`` (mean over foreground classes), ``dice_per_class``, and ``iou``, ``hd95``, ``asd``, ``nsd`` per
        class, each entry ``{"value", "ci95"}``; plus ``<metric>_mean`` over foreground classes.
    """
    n = len(per_case)
    foreground = list(class_names[1:])
    out: dict[str, Any] = {"n_cases": n}
    weights = (
        np.concatenate(list(bs.resample_weights(n, n_bootstrap, seed))) if n_bootstrap > 0 and n else None
    )  # (B, N) counts
    for metric in METRICS:
        values = np.array([row[metric] for row in per_case], dtype=float).reshape(n, len(foreground))  # (N, K-1)
        point = _nanmean_weighted(values, np.ones((1, n)))[0]  # (K-1,)
        samples = _nanmean_weighted(values, weights) if weights is not None else None  # (B, K-1)
        per_class = {
            name: _entry(point[j], samples[:, j] if samples is not None else None) for j, name in enumerate(foreground)
        }
        with np.errstate(invalid="ignore"):
            mean_point = float(np.nanmean(point)) if not np.all(np.isnan(point)) else float("nan")
            mean_samples = np.nanmean(samples, axis=1) if samples is not None else None
        mean = _entry(mean_point, mean_samples)
        if metric == "dice":
            out["dice"] = mean
            out["dice_per_class"] = per_class
        else:
            out[metric] = per_class
            out[f"{metric}_mean"] = mean
    return out


def _nanmean_weighted(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over cases ignoring NaN: values (N, K), weights (B, N) -> (B, K), NaN where undefined."""
    defined = ~np.isnan(values)
    filled = np.where(defined, values, 0.0)
    total = weights @ filled  # (B, K)
    count = weights @ defined.astype(float)  # (B, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1e-12), np.nan)


def _entry(value: float, samples: np.ndarray | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": None if np.isnan(value) else float(value), "ci95": [None, None]}
    if entry["value"] is not None and samples is not None:
        entry["ci95"], note = bs.percentile_ci(samples)
        if note:
            entry["note"] = note
    return entry
