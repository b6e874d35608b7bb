"""The vectorised bootstrap: weighted kernels equal scikit-learn on explicit resamples; intervals behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medlens.metrics import bootstrap as bs
from medlens.tasks.classification.metrics import METRIC_KEYS, classification_metrics
from prediction_cases import make_case


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_rank_metrics_equal_sklearn_on_resamples(ties: bool) -> None:
    rng = np.random.default_rng(0)
    n = 200
    target = rng.integers(0, 2, n)
    score = 0.3 * target + 0.7 * rng.random(n)
    if ties:
        score = np.round(score, 1)
    idx = rng.integers(0, n, (5, n))  # 5 explicit resamples
    weights = bs.counts_from_indices(idx, n)
    assert np.array_equal(weights.sum(axis=1), np.full(5, n))
    auc = bs.weighted_roc_auc(score, target, weights)
    ap = bs.weighted_average_precision(score, target, weights)
    for i in range(5):
        t, s = target[idx[i]], score[idx[i]]
        assert auc[i] == pytest.approx(skm.roc_auc_score(t, s), abs=1e-12)
        assert ap[i] == pytest.approx(skm.average_precision_score(t, s), abs=1e-12)


def test_weighted_counts_equal_sklearn_on_resamples() -> None:
    rng = np.random.default_rng(1)
    n, k = 150, 3
    y, pred = rng.integers(0, k, n), rng.integers(0, k, n)
    idx = rng.integers(0, n, (4, n))
    eye = np.eye(k, dtype=int)
    counts = bs.weighted_confusion_counts(eye[y], eye[pred], bs.counts_from_indices(idx, n))
    rates = bs.rates_from_counts(counts)
    for i in range(4):
        cm = skm.multilabel_confusion_matrix(y[idx[i]], pred[idx[i]], labels=list(range(k)))  # (K, 2, 2)
        assert np.array_equal(counts["tn"][i], cm[:, 0, 0]) and np.array_equal(counts["tp"][i], cm[:, 1, 1])
        assert np.array_equal(counts["fp"][i], cm[:, 0, 1]) and np.array_equal(counts["fn"][i], cm[:, 1, 0])
        recall = skm.recall_score(y[idx[i]], pred[idx[i]], labels=list(range(k)), average=None)
        assert np.allclose(rates["sensitivity"][i], recall)


def test_undefined_resamples_are_nan() -> None:
    target, score = np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])
    weights = np.array([[3, 0, 0], [1, 1, 1], [0, 0, 3]])
    auc = bs.weighted_roc_auc(score, target, weights)
    ap = bs.weighted_average_precision(score, target, weights)
    assert np.isnan(auc[0]) and auc[1] == 1.0 and np.isnan(auc[2])
    assert np.isnan(ap[0]) and ap[1] == 1.0 and ap[2] == 1.0


def test_percentile_ci_skips_and_refuses() -> None:
    samples = np.concatenate([np.linspace(0, 1, 90), np.full(10, np.nan)])
    (lo, _), note = bs.percentile_ci(samples)
    assert lo == pytest.approx(np.percentile(np.linspace(0, 1, 90), 2.5)) and "10 of 100" in note
    assert bs.percentile_ci(np.full(10, np.nan))[0] == [None, None]
    assert bs.percentile_ci(np.array([0.5, np.nan, np.nan, np.nan]))[0] == [None, None]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_intervals_contain_the_estimate_and_shrink_with_more_cases(task: str) -> None:
    names = ["a", "b"] if task == "binary" else list("abcd")
    widths = {}
    for n in (200, 2000):
        y, p = make_case(task, "random", n=n, seed=5)
        m = classification_metrics(y, p, task=task, class_names=names, n_bootstrap=400, seed=0)
        for key in METRIC_KEYS:
            lo, hi = m[key]["ci95"]
            if key != "ece":  # the ECE is biased upwards on resamples; its interval may sit above it
                assert lo <= m[key]["value"] <= hi, (n, key, m[key])
            widths.setdefault(key, []).append(hi - lo)
        for entry in m["per_class"].values():
            lo, hi = entry["auc"]["ci95"]
            assert lo <= entry["auc"]["value"] <= hi
    for key, (small, large) in widths.items():
        assert large < 0.6 * small, (key, small, large)  # ~ 1/sqrt(10) expected


def test_bootstrap_is_seeded() -> None:
    y, p = make_case("binary", "random")
    a = classification_metrics(y, p, task="binary", class_names=["a", "b"], n_bootstrap=100, seed=3)
    b = classification_metrics(y, p, task="binary", class_names=["a", "b"], n_bootstrap=100, seed=3)
    c = classification_metrics(y, p, task="binary", class_names=["a", "b"], n_bootstrap=100, seed=4)
    assert a == b and a["auc"]["ci95"] != c["auc"]["ci95"]


def test_blocks_cover_every_resample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bs, "_MAX_BLOCK_ELEMENTS", 1000)  # force many small blocks
    blocks = list(bs.resample_weights(300, 25, seed=0))
    assert sum(len(b) for b in blocks) == 25 and len(blocks) > 1
    assert all(np.array_equal(b.sum(axis=1), np.full(len(b), 300)) for b in blocks)


def test_no_bootstrap_gives_no_interval() -> None:
    y, p = make_case("binary", "random")
    m = classification_metrics(y, p, task="binary", class_names=["a", "b"], n_bootstrap=0)
    assert m["auc"]["ci95"] == [None, None] and m["auc"]["value"] is not None
