"""Selective prediction: AURC against a hand computation, ties, the bootstrap kernel, the referral threshold."""

from __future__ import annotations

import numpy as np
import pytest

from medlens.metrics.bootstrap import counts_from_indices
from medlens.metrics.selective import REFER_ALL, aurc, choose_referral_threshold, refers, risk_coverage


def test_aurc_against_a_hand_computation() -> None:
    confidence = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    error = np.array([0, 1, 0, 0, 1, 1])
    # keeping the k most confident: errors 0, 1, 1, 1, 2, 3 over k = 1..6
    by_hand = np.mean([0 / 1, 1 / 2, 1 / 3, 1 / 4, 2 / 5, 3 / 6])
    assert aurc(confidence, error)[0] == pytest.approx(by_hand)
    _, coverage, risk = risk_coverage(confidence, error)
    assert coverage[0].tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1])
    assert risk[0][-1] == pytest.approx(0.5)  # keep every case: the error rate


def test_ties_are_kept_or_referred_together() -> None:
    confidence = np.array([0.9, 0.7, 0.7, 0.5])
    error = np.array([0, 1, 0, 1])
    # groups: {0.9}: risk 0; {0.7, 0.7}: risk 1/3 for 2 of 4 cases; {0.5}: risk 2/4
    assert aurc(confidence, error)[0] == pytest.approx(0.25 * 0 + 0.5 * (1 / 3) + 0.25 * 0.5)
    swapped = aurc(confidence, np.array([0, 0, 1, 1]))[0]  # the order within a tie does not matter
    assert swapped == pytest.approx(aurc(confidence, error)[0])


def test_weighted_aurc_equals_the_resampled_cases() -> None:
    rng = np.random.default_rng(0)
    n = 60
    confidence, error = rng.random(n), (rng.random(n) < 0.3).astype(float)
    idx = rng.integers(0, n, (4, n))
    weighted = aurc(confidence, error, counts_from_indices(idx, n))
    for b in range(4):
        assert weighted[b] == pytest.approx(aurc(confidence[idx[b]], error[idx[b]])[0])


def test_a_confidence_that_ranks_errors_last_beats_a_random_one() -> None:
    rng = np.random.default_rng(1)
    error = (rng.random(500) < 0.2).astype(float)
    informative = np.where(error == 1, rng.random(500) * 0.5, 0.5 + rng.random(500) * 0.5)
    assert aurc(informative, error)[0] < 0.05 < aurc(rng.random(500), error)[0]


def test_referral_threshold_reaches_the_target_on_the_cases_kept() -> None:
    rng = np.random.default_rng(2)
    confidence = rng.random(400)
    correct = rng.random(400) < 0.5 + 0.5 * confidence  # surer cases are more often right
    cut = choose_referral_threshold(confidence, correct, 0.9)
    kept = ~refers(confidence, cut)
    assert correct[kept].mean() >= 0.9
    lower = confidence[confidence < cut].max()  # the next lower cut keeps one more group and misses the target
    assert correct[confidence >= lower].mean() < 0.9
    assert choose_referral_threshold(confidence, np.ones(400, bool), 0.9) == 0.0  # all right: refer none
    assert choose_referral_threshold(confidence, np.zeros(400, bool), 0.9) == REFER_ALL
    assert refers(np.array([1.0, 0.2]), REFER_ALL).all() and not refers(np.array([0.1]), None).any()
