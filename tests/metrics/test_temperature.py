"""Temperature scaling: the closed-form answer on a toy case, lower NLL on over-confident logits, members and folds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from medlens.metrics.temperature import ensemble_nll, fit_temperature, scaled_probabilities


@pytest.mark.parametrize(("logit", "share"), [(2.0, 0.8), (4.0, 0.7), (1.0, 0.95)])
def test_the_closed_form_answer_on_a_toy_case(logit: float, share: float) -> None:
    """Every case has logits (0, L) and a share q is class 1: the best probability is q, so T = L / logit(q)."""
    n = 200
    logits = np.tile([0.0, logit], (1, n, 1))  # (1 member, N, 2)
    y = (np.arange(n) < round(share * n)).astype(int)
    expected = logit / math.log(share / (1 - share))
    assert fit_temperature(logits, y) == pytest.approx(expected, rel=1e-4)


def test_over_confident_logits_are_softened_and_the_nll_drops() -> None:
    rng = np.random.default_rng(0)
    n, k = 600, 3
    true_logits = rng.normal(size=(n, k)) * 1.5
    y = np.array([rng.choice(k, p=p) for p in softmax(true_logits, axis=1)])
    over = 3.0 * true_logits[None]  # a model 3x too sure of itself
    t = fit_temperature(over, y)
    assert 2.4 < t < 3.6  # about the 3 it was sharpened by
    assert ensemble_nll(over, y, t) < ensemble_nll(over, y, 1.0) - 0.1
    assert ensemble_nll(over, y, t) <= min(ensemble_nll(over, y, s) for s in (t * 0.95, t * 1.05))  # a minimum


def test_members_are_averaged_after_scaling_and_folds_use_their_own_cases() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 50, 2)) * 4
    y = rng.integers(0, 2, 50)
    t = 1.7
    mean = scaled_probabilities(logits, t).mean(axis=0)
    assert ensemble_nll(logits, y, t) == pytest.approx(-np.log(mean[np.arange(50), y]).mean())
    mask = np.zeros((2, 50), dtype=bool)
    mask[0, :25], mask[1, 25:] = True, True  # folds: each case predicted by the member that held it out
    own = np.concatenate([scaled_probabilities(logits[0, :25], t), scaled_probabilities(logits[1, 25:], t)])
    assert ensemble_nll(logits, y, t, mask=mask) == pytest.approx(-np.log(own[np.arange(50), y]).mean())


def test_multilabel_fits_one_temperature_for_every_sigmoid() -> None:
    rng = np.random.default_rng(2)
    true_logits = rng.normal(size=(400, 3))
    y = (rng.random((400, 3)) < 1 / (1 + np.exp(-true_logits))).astype(int)
    t = fit_temperature(2.0 * true_logits[None], y, multilabel=True)
    assert 1.6 < t < 2.5
