"""Expected calibration error: a hand-computed example, and torchmetrics as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from medlens.metrics.calibration import (
    bin_indices,
    calibration_pairs,
    expected_calibration_error,
    reliability_diagram,
)
from medlens.tasks.classification.metrics import classification_metrics
from prediction_cases import make_case


def _ece(y: np.ndarray, p: np.ndarray, task: str) -> float:
    return float(expected_calibration_error(*calibration_pairs(y, p, task))[0])


def test_binary_hand_example() -> None:
    # 15 bins of width 1/15: 0.05 -> bin 0, 0.1 -> bin 1, 0.5 and 0.52 -> bin 7, 0.95 -> bin 14
    y = np.array([0, 0, 1, 0, 1])
    p = np.array([0.05, 0.1, 0.5, 0.52, 0.95])
    # |0.05-0|/5 + |0.1-0|/5 + |0.51-0.5|*2/5 + |0.95-1|/5
    assert _ece(y, p, "binary") == pytest.approx(0.01 + 0.02 + 0.004 + 0.01)


def test_multiclass_hand_example() -> None:
    y = np.array([0, 0, 2, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.38, 0.62, 0.0], [0.05, 0.1, 0.85], [0.34, 0.33, 0.33]])
    # top confidences 0.7 (right), 0.62 (wrong), 0.85 (right), 0.34 (wrong), each alone in its bin
    assert _ece(y, p, "multiclass") == pytest.approx((0.3 + 0.62 + 0.15 + 0.34) / 4)


@pytest.mark.parametrize("seed", range(3))
def test_binary_matches_torchmetrics(seed: int) -> None:
    y, p = make_case("binary", "random", n=500, seed=seed)
    ref = BinaryCalibrationError(n_bins=15, norm="l1")(torch.tensor(p), torch.tensor(y))
    assert _ece(y, p, "binary") == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_matches_torchmetrics(seed: int) -> None:
    y, p = make_case("multiclass", "random", n=500, seed=seed)
    ref = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(torch.tensor(p), torch.tensor(y))
    assert _ece(y, p, "multiclass") == pytest.approx(float(ref), abs=1e-6)


def test_multilabel_is_the_mean_of_binary_per_label() -> None:
    y, p = make_case("multilabel", "random", n=400, seed=2)
    per_label = [
        float(BinaryCalibrationError(n_bins=15, norm="l1")(torch.tensor(p[:, j]), torch.tensor(y[:, j])))
        for j in range(y.shape[1])
    ]
    assert _ece(y, p, "multilabel") == pytest.approx(np.mean(per_label), abs=1e-6)


def test_metrics_report_the_same_ece() -> None:
    y, p = make_case("multiclass", "random", n=300)
    m = classification_metrics(y, p, task="multiclass", class_names=list("abcd"), n_bootstrap=0)
    assert m["ece"]["value"] == pytest.approx(_ece(y, p, "multiclass"))
    assert m["at_threshold_0.5"]["ece"] == m["ece"]


def test_bins_and_reliability_data() -> None:
    assert list(bin_indices(np.array([0.0, 1 / 30, 0.999, 1.0]))) == [0, 0, 14, 14]
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.06, 0.97, 1.0])
    diagram = reliability_diagram(*calibration_pairs(y, p, "binary"), task="binary")
    bins = diagram["bins"]
    assert diagram["n_bins"] == 15 and sum(b["count"] for b in bins) == 4
    assert bins[0] == {
        "lower": 0.0,
        "upper": pytest.approx(1 / 15),
        "count": 2,
        "mean_confidence": pytest.approx(0.055),
        "observed": 0.5,
    }
    assert bins[14]["count"] == 2 and bins[14]["observed"] == 1.0
    assert bins[5]["count"] == 0 and bins[5]["observed"] is None


def test_perfect_calibration_in_expectation_is_small() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert _ece(y, p, "binary") < 0.02
