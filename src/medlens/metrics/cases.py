"""The cases a model did worst on, by a per-case score: the known failure modes of a model card.

Every task ranks its cases by its own per-case measure (segmentation: mean Dice; classification: the probability
given to the true class; detection: objects missed; regression: absolute error) and hands the scores here, so the
card and the evaluation list them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

WORST_N = 5  # cases listed


def worst_cases(
    case_ids: Sequence[str],
    scores: Sequence[float],
    *,
    metric: str,
    higher_is_worse: bool = False,
    n: int = WORST_N,
    details: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The ``n`` worst cases: ``{"case_id", "metric", "value", **details}``, worst first (undefined scores left out).

    Args:
        case_ids: the cases.
        scores: each case's score.
        metric: what the score is (shown with it).
        higher_is_worse: rank the highest scores first (errors, misses) instead of the lowest (Dice, probability).
        n: how many to list.
        details: further JSON-ready facts per case (the truth, the prediction).

    Example:
        >>> worst_cases(["a", "b", "c"], [0.9, 0.2, 0.5], metric="dice", n=2)
        [{'case_id': 'b', 'metric': 'dice', 'value': 0.2}, {'case_id': 'c', 'metric': 'dice', 'value': 0.5}]
    """
    rows = [
        (float(s), i) for i, s in enumerate(scores) if s is not None and not math.isnan(float(s))
    ]  # (score, index) of defined scores
    rows.sort(key=lambda r: (-r[0] if higher_is_worse else r[0], r[1]))
    out = []
    for score, i in rows[:n]:
        entry: dict[str, Any] = {"case_id": str(case_ids[i]), "metric": metric, "value": round(score, 4)}
        if details is not None:
            entry.update(details[i])
        out.append(entry)
    return out
