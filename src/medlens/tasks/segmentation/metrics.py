"""Segmentation metrics per case and class, and their case average with 95% bootstrap intervals (BCa, from
``scipy.stats.bootstrap``: every figure is a mean of per-case values; patients are resampled when cases share
them, see :func:`medlens.metrics.bootstrap.bca_entry`).

Per case and foreground class: Dice, IoU, the 95th-percentile Hausdorff distance (HD95), the average
symmetric surface distance (ASD) and the normalised surface Dice (NSD) at a tolerance in millimetres per
class. HD95 and ASD follow MONAI's definitions (surfaces are the voxels removed by one binary erosion; HD95
is the larger of the two directed 95th percentiles; ASD the mean over both directions' distances). NSD is
MONAI's ``compute_surface_dice`` with sub-voxel surfaces (``use_subvoxels=True``), the definition of
DeepMind's surface-distance library and of Nikolov et al., so it compares with published figures.

HD95 and ASD are written on scipy's Euclidean distance transform rather than by calling MONAI's functions
because one pass over the two surfaces serves both (MONAI recomputes edges and distances per metric and per
call), and because the empty-mask conventions must be defined for a case average (the tests compare every
value with MONAI's):

- class absent from both truth and prediction: every metric undefined (NaN), left out of the average;
- class present in only one of them: Dice, IoU and NSD are 0, and HD95 and ASD are the length of the
  image diagonal in millimetres (the largest distance possible), so a missed structure is penalised.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medlens.metrics import bootstrap as bs

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
    values = overlap_and_distances(pred, truth, spacing)
    both = pred.astype(np.uint8) + 2 * truth.astype(np.uint8)
    if not both.any():
        values["nsd"] = float("nan")
    else:
        values["nsd"] = surface_dice(pred.astype(np.uint8), truth.astype(np.uint8), spacing, [nsd_tolerance_mm], 2)[0]
    return values


def surface_dice(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerances_mm: Sequence[float], n_classes: int
) -> list[float]:
    """NSD of each foreground class (1..K-1) of two label maps with sub-voxel surfaces (MONAI, DeepMind's
    definition); NaN where the class is in neither map, 0 where it is in one only."""
    import torch
    from monai.metrics import compute_surface_dice

    if pred.ndim not in (2, 3):
        raise ValueError(f"label maps must be 2D or 3D, got {pred.ndim}D")
    classes = np.arange(n_classes)
    onehot_pred = torch.from_numpy((pred[None] == classes.reshape(-1, *[1] * pred.ndim))[None])  # (1, K, *spatial)
    onehot_truth = torch.from_numpy((truth[None] == classes.reshape(-1, *[1] * truth.ndim))[None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about empty classes; they are NaN or 0 by definition here
        nsd = compute_surface_dice(
            onehot_pred.float(),
            onehot_truth.float(),
            class_thresholds=[float(t) for t in tolerances_mm],
            include_background=False,
            spacing=[float(s) for s in spacing],
            use_subvoxels=True,
        )
    return [float(v) for v in nsd[0].tolist()]


def overlap_and_distances(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Dice, IoU, HD95 and ASD of one binary structure."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    if n_pred == 0 and n_truth == 0:
        return dict.fromkeys(("dice", "iou", "hd95", "asd"), float("nan"))
    intersection = int((pred & truth).sum())
    dice = 2 * intersection / (n_pred + n_truth)
    iou = intersection / (n_pred + n_truth - intersection)
    if n_pred == 0 or n_truth == 0:
        diagonal = float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(spacing, dtype=float)))
        return {"dice": dice, "iou": iou, "hd95": diagonal, "asd": diagonal}
    d_pred, d_truth = surface_distances(pred, truth, spacing)
    hd95 = max(float(np.percentile(d_pred, 95)), float(np.percentile(d_truth, 95)))
    asd = float(np.concatenate([d_pred, d_truth]).mean())
    return {"dice": dice, "iou": iou, "hd95": hd95, "asd": asd}


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    n_classes: int,
    spacing: Sequence[float],
    nsd_tolerance_mm: Sequence[float] | float = 1.0,
) -> dict[str, list[float]]:
    """Every metric for each foreground class (1..K-1) of one case's label maps (same shape, class indices).

    Args:
        pred: predicted class indices.
        truth: true class indices, same shape.
        n_classes: classes, background included.
        spacing: voxel size in mm per axis.
        nsd_tolerance_mm: NSD tolerance, one for all foreground classes or one per class.

    Example:
        >>> t = np.zeros((8, 8), np.uint8); t[2:6, 2:6] = 1
        >>> case_metrics(t, t, 2, (1.0, 1.0))["dice"]
        [1.0]
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the truth's {truth.shape}")
    tolerances = (
        [float(nsd_tolerance_mm)] * (n_classes - 1)
        if isinstance(nsd_tolerance_mm, int | float)
        else [float(t) for t in nsd_tolerance_mm]
    )
    rows: dict[str, list[float]] = {m: [] for m in METRICS}
    for k in range(1, n_classes):
        values = overlap_and_distances(pred == k, truth == k, spacing)
        for m in ("dice", "iou", "hd95", "asd"):
            rows[m].append(values[m])
    rows["nsd"] = surface_dice(pred, truth, spacing, tolerances, n_classes)
    return rows


def summarize(
    per_case: Sequence[dict[str, list[float]]],
    class_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Case averages with 95% BCa bootstrap intervals (the same resamples for every metric).

    Args:
        per_case: :func:`case_metrics` of each case.
        class_names: all class names, background first.
        n_bootstrap: resamples (0: no intervals).
        seed: seed of the resamples.
        groups: patient group of each case (:func:`~medlens.metrics.bootstrap.group_index`); ``None``: cases.

    Returns:
        ``dice`` (mean over foreground classes), ``dice_per_class``, and ``iou``, ``hd95``, ``asd``, ``nsd`` per
        class, each entry ``{"value", "ci95"}``; plus ``<metric>_mean`` over foreground classes.
    """
    n = len(per_case)
    foreground = list(class_names[1:])
    out: dict[str, Any] = {"n_cases": n}
    for metric in METRICS:
        values = np.array([row[metric] for row in per_case], dtype=float).reshape(n, len(foreground))  # (N, K-1)
        per_class = {
            name: bs.bca_entry(values[:, j], groups=groups, n_bootstrap=n_bootstrap, seed=seed)
            for j, name in enumerate(foreground)
        }
        mean = bs.bca_entry(values, groups=groups, n_bootstrap=n_bootstrap, seed=seed)  # mean over classes
        if metric == "dice":
            out["dice"] = mean
            out["dice_per_class"] = per_class
        else:
            out[metric] = per_class
            out[f"{metric}_mean"] = mean
    out["bootstrap"] = {
        "n_resamples": n_bootstrap,
        "seed": seed,
        "method": "95% BCa interval (scipy.stats.bootstrap) of the mean of per-case values",
        **bs.bootstrap_method(groups, n),
    }
    return out


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Dice of each foreground class (K-1,) of two label maps, NaN where the class is in neither map (the Dice
    of :func:`binary_metrics`, without the distances)."""
    out = np.full(n_classes - 1, np.nan)
    for k in range(1, n_classes):
        p, t = pred == k, truth == k
        denominator = int(p.sum()) + int(t.sum())
        if denominator:
            out[k - 1] = 2 * int((p & t).sum()) / denominator
    return out
