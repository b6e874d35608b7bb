"""Metrics per subgroup (sex, age band, site, scanner: any manifest column), and the subgroups that fall behind.

``evaluate --by COLUMN`` groups the evaluated cases by the value of one manifest column. A task measures each
subgroup with the same function that measures all cases (so a subgroup's figures equal an evaluation of that
subgroup alone), and measures the rest of the cases (every other subgroup together) for comparison. A subgroup is
*flagged* when the 95% interval of the headline metric lies wholly on the worse side of the rest's interval
(below it for Dice or AUC, above it for an error such as MAE): a gap the resampling cannot explain.

Columns with many numeric values are banded, so a group has enough cases to say something: DICOM ages
(``045Y``, ``006M``) by decade of years, other numbers (more than :data:`MAX_GROUPS` distinct values) by quartile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: a column with more distinct numeric values than this is banded
MAX_GROUPS = 8
MISSING = "(empty)"
_DICOM_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass
class Subgroups:
    """The subgroup of each evaluated case, by one manifest column.

    Attributes:
        column: the manifest column.
        labels: the subgroup of each case, in case order.
        banding: how values were banded (empty when the values are the groups).
    """

    column: str
    labels: list[str]
    banding: str = ""

    def members(self) -> dict[str, np.ndarray]:
        """Each subgroup's case indices, subgroups in sorted order (empty values last)."""
        names = sorted(set(self.labels), key=lambda v: (v == MISSING, _sort_key(v)))
        labels = np.asarray(self.labels, dtype=object)
        return {name: np.flatnonzero(labels == name) for name in names}


def _sort_key(value: str) -> tuple[float, str]:
    number = re.match(r"^\[?(-?[0-9.]+)", value)
    try:
        return (float(number.group(1)) if number else math.inf, value)
    except ValueError:
        return (math.inf, value)


def _age_years(value: str) -> float | None:
    match = _DICOM_AGE.match(value)
    return int(match.group(1)) * _YEARS[match.group(2).upper()] if match else None


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def subgroups_of(column: str, values: Sequence[str]) -> Subgroups:
    """Group cases by their values of ``column``; ages by decade and many-valued numbers by quartile.

    Example:
        >>> subgroups_of("PatientAge", ["034Y", "038Y", "061Y", "", "006M"]).labels
        ['30-39', '30-39', '60-69', '(empty)', '0-9']
    """
    text = [str(v).strip() for v in values]
    present = [v for v in text if v]
    labels = [v or MISSING for v in text]
    if not present:
        return Subgroups(column, labels)
    ages = [_age_years(v) for v in present]
    if all(a is not None for a in ages) and len(set(present)) > 1:

        def decade(v: str) -> str:
            years = _age_years(v)
            low = int((years or 0) // 10) * 10
            return f"{low}-{low + 9}"

        return Subgroups(column, [decade(v) if v else MISSING for v in text], "DICOM ages (nnnY/M/W/D) by decade")
    numbers = [_number(v) for v in present]
    if all(n is not None for n in numbers) and len(set(present)) > MAX_GROUPS:
        edges = np.quantile(np.asarray(numbers, dtype=np.float64), [0.25, 0.5, 0.75])
        bounds = [-math.inf, *edges.tolist(), math.inf]

        def quartile(v: str) -> str:
            x = float(v)
            q = min(int(np.searchsorted(edges, x, side="right")), 3)
            low, high = bounds[q], bounds[q + 1]
            return f"Q{q + 1} [{'' if low == -math.inf else f'{low:g}'}, {'' if high == math.inf else f'{high:g}'})"

        return Subgroups(column, [quartile(v) if v else MISSING for v in text], "numbers by quartile")
    return Subgroups(column, labels)


def headline_entry(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    """The ``{"value", "ci95"}`` entry of the headline metric (a dotted key reaches into a mapping)."""
    entry: Any = metrics
    for part in key.split("."):
        entry = entry.get(part, {}) if isinstance(entry, dict) else {}
    return entry if isinstance(entry, dict) else {}


def is_worse(group: dict[str, Any], rest: dict[str, Any], higher_is_better: bool) -> bool:
    """Whether ``group``'s 95% interval lies wholly on the worse side of ``rest``'s (both must have one)."""
    g_lo, g_hi = group.get("ci95") or [None, None]
    r_lo, r_hi = rest.get("ci95") or [None, None]
    if None in (g_lo, g_hi, r_lo, r_hi):
        return False
    return bool(g_hi < r_lo) if higher_is_better else bool(g_lo > r_hi)


def subgroup_metrics(
    subgroups: Subgroups,
    measure: Callable[[np.ndarray], dict[str, Any]],
    *,
    headline: str,
    higher_is_better: bool,
    patients: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric per subgroup through ``measure`` (the task's own), the rest's headline, and the flags.

    Args:
        subgroups: the subgroup of each case.
        measure: the task's metrics of a subset of the cases, given their indices.
        headline: the metric compared with the rest (a key of ``measure``'s result; dotted for nested).
        higher_is_better: whether a higher headline is better (Dice, AUC) or worse (MAE, HD95).
        patients: each case's patient, to count patients per subgroup.

    Returns:
        ``{"column", "banding", "headline", "higher_is_better", "groups": {name: {"n_cases", "n_patients",
        "metrics", "rest", "flagged"}}, "flagged": [names]}``; JSON-ready.
    """
    members = subgroups.members()
    n = len(subgroups.labels)
    groups: dict[str, Any] = {}
    for name, index in members.items():
        metrics = measure(index)
        rest_index = np.setdiff1d(np.arange(n), index)
        rest = headline_entry(measure(rest_index), headline) if len(rest_index) else {}
        group = headline_entry(metrics, headline)
        groups[name] = {
            "n_cases": len(index),
            "n_patients": len({patients[i] for i in index}) if patients is not None else len(index),
            "headline": group,
            "rest": {"n_cases": len(rest_index), **rest},
            "flagged": is_worse(group, rest, higher_is_better),
            "metrics": metrics,
        }
    return {
        "column": subgroups.column,
        "banding": subgroups.banding,
        "headline": headline,
        "higher_is_better": higher_is_better,
        "rule": "flagged: the subgroup's 95% interval of the headline metric lies wholly "
        + ("below" if higher_is_better else "above")
        + " the interval of the rest of the cases",
        "groups": groups,
        "flagged": [name for name, g in groups.items() if g["flagged"]],
    }
