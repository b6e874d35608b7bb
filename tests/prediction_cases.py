"""Synthetic predictions for the evaluation tests: informative, tied, degenerate, for every task.

Imported by the tests as ``from prediction_cases import make_case`` (``tests`` is on pytest's path).
"""

from __future__ import annotations

import numpy as np

KINDS = ("random", "ties", "missing_class", "tiny", "perfect")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_case(task: str, kind: str, n: int = 300, seed: int = 0, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities for ``task``.

    Kinds: ``random`` (informative, noisy), ``ties`` (probabilities rounded to one decimal), ``missing_class``
    (binary: negatives only; multiclass: class 1 absent; multilabel: label 1 never positive and label 2
    always positive), ``tiny`` (5 cases), ``perfect`` (a perfect ranking).
    """
    rng = np.random.default_rng(seed)
    n = 5 if kind == "tiny" else n
    if task == "binary":
        y = rng.integers(0, 2, n)
        if kind == "tiny":
            y = np.array([0, 1, 0, 1, 1])
        if kind == "missing_class":
            y = np.zeros(n, dtype=int)
        p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
        if kind == "perfect":
            p = np.where(y == 1, 0.6 + 0.4 * rng.random(n), 0.4 * rng.random(n))
        if kind == "ties":
            p = np.round(p, 1)
        return y, p
    if task == "multiclass":
        y = rng.integers(0, k, n)
        if kind == "tiny":
            y = np.array([0, 1, 2, 3, 0])
        if kind == "missing_class":
            y = np.where(y == 1, 0, y)
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), y] += 1.5 if kind != "perfect" else 20.0
        prob = _softmax(logits)
        if kind == "ties":
            prob = np.round(prob, 1)
            prob = prob / np.maximum(prob.sum(axis=1, keepdims=True), 1e-9)
            prob = np.round(prob, 2)
        return y, prob
    y = rng.integers(0, 2, (n, k))
    if kind == "tiny":
        y = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
    if kind == "missing_class":
        y[:, 1], y[:, 2] = 0, 1
    p = np.clip(0.35 * y + 0.65 * rng.random((n, k)), 0, 1)
    if kind == "perfect":
        p = np.where(y == 1, 0.6 + 0.4 * rng.random((n, k)), 0.4 * rng.random((n, k)))
    if kind == "ties":
        p = np.round(p, 1)
    return y, p
