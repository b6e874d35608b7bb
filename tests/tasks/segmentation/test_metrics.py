"""Segmentation metrics against MONAI's functions, on real hippocampus masks and on edge cases.

NSD is the sub-voxel surface Dice (DeepMind's definition, MONAI ``use_subvoxels=True``), so the reference is
called the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
)
from scipy import ndimage

from medlens.tasks.segmentation.metrics import binary_metrics, case_metrics, summarize


def _monai(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], tol: float) -> dict[str, float]:
    p = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))  # (1, 2, *spatial) one-hot
    t = torch.from_numpy(np.stack([~truth, truth])[None].astype(np.float32))
    kw = {"include_background": False}
    return {
        "dice": float(compute_dice(p, t, **kw)),
        "iou": float(compute_iou(p, t, **kw)),
        "hd95": float(compute_hausdorff_distance(p, t, percentile=95, spacing=list(spacing), **kw)),
        "asd": float(compute_average_surface_distance(p, t, symmetric=True, spacing=list(spacing), **kw)),
        "nsd": float(
            compute_surface_dice(p, t, class_thresholds=[tol], spacing=list(spacing), use_subvoxels=True, **kw)
        ),
    }


def _shifted_pairs(label: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A real structure against distorted copies of itself: shifted, eroded, dilated, with a stray blob."""
    truth = label.astype(bool)
    stray = truth.copy()
    stray[:3, :3, :3] = True
    return [
        (np.roll(truth, 2, axis=0), truth),
        (ndimage.binary_erosion(truth), truth),
        (ndimage.binary_dilation(truth, iterations=2), truth),
        (stray, truth),
    ]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.2, 3.0)])
def test_metrics_match_monai_on_real_masks(hippocampus_case, spacing: tuple[float, ...]) -> None:
    _, label = hippocampus_case
    for k in (1, 2):
        for pred, truth in _shifted_pairs(label == k):
            ours = binary_metrics(pred, truth, spacing, nsd_tolerance_mm=1.5)
            ref = _monai(pred, truth, spacing, 1.5)
            for key in ref:
                assert ours[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-5), key


def test_metrics_match_monai_in_2d() -> None:
    truth = np.zeros((40, 50), bool)
    truth[10:30, 12:40] = True
    pred = np.roll(truth, (3, -2), axis=(0, 1))
    ours = binary_metrics(pred, truth, (0.5, 0.7), nsd_tolerance_mm=1.0)
    ref = _monai(pred, truth, (0.5, 0.7), 1.0)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], rel=1e-5), key


def test_empty_conventions() -> None:
    empty = np.zeros((10, 10, 10), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    both = binary_metrics(empty, empty, (1, 1, 1))
    assert all(np.isnan(v) for v in both.values())
    missed = binary_metrics(empty, full, (1, 1, 2))
    assert missed["dice"] == 0 and missed["nsd"] == 0
    assert missed["hd95"] == pytest.approx(np.sqrt(10**2 + 10**2 + 20**2))
    perfect = binary_metrics(full, full, (1, 1, 1))
    assert perfect == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "asd": 0.0, "nsd": 1.0}


def test_summary_case_average_and_intervals() -> None:
    truth = np.zeros((12, 12), np.uint8)
    truth[2:8, 2:8] = 1
    truth[8:11, 8:11] = 2
    cases = []
    for shift in range(6):
        pred = np.roll(truth, shift, axis=0)
        cases.append(case_metrics(pred, truth, 3, (1.0, 1.0)))
    out = summarize(cases, ["background", "a", "b"], n_bootstrap=200, seed=1)
    dice_a = np.mean([c["dice"][0] for c in cases])
    assert out["dice_per_class"]["a"]["value"] == pytest.approx(dice_a)
    assert out["dice"]["value"] == pytest.approx(np.mean([dice_a, np.mean([c["dice"][1] for c in cases])]))
    lo, hi = out["dice"]["ci95"]
    assert lo <= out["dice"]["value"] <= hi and lo < hi
    assert set(out["hd95"]) == {"a", "b"} and out["n_cases"] == 6


def test_summary_skips_undefined_cases() -> None:
    rows = [{"dice": [0.5], "iou": [0.3], "hd95": [2.0], "asd": [1.0], "nsd": [0.5]}]
    rows.append({m: [float("nan")] for m in rows[0]})
    out = summarize(rows, ["bg", "x"], n_bootstrap=0)
    assert out["dice"]["value"] == 0.5 and out["hd95"]["x"]["value"] == 2.0
