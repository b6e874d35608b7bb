"""Temperature scaling (Guo et al., 2017): one number ``T`` that divides every logit, chosen on validation.

``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens under-confident ones; the arg-max (and a
single model's ranking of cases, hence its AUC) does not change. ``T`` is the value that minimises the negative
log-likelihood (NLL) of the validation truth under the probabilities prediction serves: every member's logits
divided by ``T``, turned into probabilities (softmax; a sigmoid per label for multi-label), then averaged over the
members that predicted the case (all seeds; with folds, the member that held the case out). One parameter, so the
minimum is found by scipy's bounded scalar search on ``log T`` (no gradient needed, and the objective is smooth
and has a single minimum in practice).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax

#: the search range of the temperature
BOUNDS = (0.05, 20.0)
_EPS = 1e-12


def scaled_probabilities(logits: np.ndarray, temperature: float, *, multilabel: bool = False) -> np.ndarray:
    """Probabilities of ``logits / temperature`` along the last axis: softmax, or a sigmoid per label."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return expit(z) if multilabel else softmax(z, axis=-1)


def ensemble_nll(
    logits: np.ndarray,
    targets: np.ndarray,
    temperature: float = 1.0,
    *,
    multilabel: bool = False,
    mask: np.ndarray | None = None,
) -> float:
    """Mean negative log-likelihood of the truth under the members' averaged, temperature-scaled probabilities.

    Args:
        logits: ``(M, N, K)`` each member's logits for each case.
        targets: ``(N,)`` class indices, or ``(N, K)`` 0/1 flags for multi-label.
        temperature: divides every logit.
        multilabel: sigmoid per label and binary cross-entropy averaged over labels.
        mask: ``(M, N)`` which member predicted which case (all, by default).

    Returns:
        The NLL in nats per case (per case and label for multi-label).
    """
    logits = np.asarray(logits, dtype=np.float64)
    m, n, _ = logits.shape
    mask = np.ones((m, n), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    weight = mask / np.maximum(mask.sum(axis=0, keepdims=True), 1)  # (M, N): each case's members weigh 1/count
    if m == 1 and not multilabel:  # one member: the exact log-softmax, no averaging
        log_p = log_softmax(logits[0] / temperature, axis=-1)
        return float(-log_p[np.arange(n), np.asarray(targets, dtype=np.int64)].mean())
    probs = np.einsum("mn,mnk->nk", weight, scaled_probabilities(logits, temperature, multilabel=multilabel))
    if multilabel:
        t = np.asarray(targets, dtype=np.float64)
        return float(-(t * np.log(probs + _EPS) + (1 - t) * np.log(1 - probs + _EPS)).mean())
    return float(-np.log(probs[np.arange(n), np.asarray(targets, dtype=np.int64)] + _EPS).mean())


def fit_temperature(
    logits: np.ndarray,
    targets: np.ndarray,
    *,
    multilabel: bool = False,
    mask: np.ndarray | None = None,
    bounds: tuple[float, float] = BOUNDS,
) -> float:
    """The temperature that minimises :func:`ensemble_nll` on these cases (within ``bounds``).

    Args:
        logits: ``(M, N, K)`` members' logits on validation cases.
        targets: ``(N,)`` class indices, or ``(N, K)`` 0/1 flags for multi-label.
        multilabel: sigmoid per label.
        mask: ``(M, N)`` which member predicted which case.
        bounds: the search range.

    Returns:
        ``T``, rounded to 6 significant digits (it is stored in ``bundle.yaml``).

    Example:
        >>> z = np.array([[[0.0, 2.0]] * 10])  # one member, 10 cases, all with logits (0, 2)
        >>> y = np.array([1] * 8 + [0] * 2)  # 80% are class 1: the best p is 0.8, so T = 2 / logit(0.8)
        >>> round(fit_temperature(z, y), 3), round(2 / math.log(4), 3)
        (1.443, 1.443)
    """
    low, high = math.log(bounds[0]), math.log(bounds[1])
    result = minimize_scalar(
        lambda log_t: ensemble_nll(logits, targets, math.exp(log_t), multilabel=multilabel, mask=mask),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(f"{math.exp(float(result.x)):.6g}")
