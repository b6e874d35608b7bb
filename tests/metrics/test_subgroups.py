"""Subgroups: grouping and banding of manifest values, and the flag of a subgroup wholly below the rest."""

from __future__ import annotations

import numpy as np

from medlens.metrics.subgroups import MISSING, is_worse, subgroup_metrics, subgroups_of


def test_values_are_the_groups_and_empty_values_their_own() -> None:
    groups = subgroups_of("PatientSex", ["F", "M", "", "F", "O"])
    assert groups.labels == ["F", "M", MISSING, "F", "O"]
    assert {k: v.tolist() for k, v in groups.members().items()} == {"F": [0, 3], "M": [1], "O": [4], MISSING: [2]}


def test_dicom_ages_are_banded_by_decade_and_many_numbers_by_quartile() -> None:
    assert subgroups_of("PatientAge", ["075Y", "070Y", "018M", "045Y"]).labels == ["70-79", "70-79", "0-9", "40-49"]
    numbers = subgroups_of("age", [str(v) for v in range(20, 60)])
    assert numbers.banding == "numbers by quartile" and len(set(numbers.labels)) == 4
    few = subgroups_of("site", ["1", "2", "1"])  # a few numeric codes stay as they are
    assert few.labels == ["1", "2", "1"] and not few.banding


def test_a_subgroup_wholly_below_the_rest_is_flagged() -> None:
    assert is_worse({"ci95": [0.5, 0.6]}, {"ci95": [0.7, 0.8]}, higher_is_better=True)
    assert not is_worse({"ci95": [0.5, 0.75]}, {"ci95": [0.7, 0.8]}, higher_is_better=True)  # overlap
    assert is_worse({"ci95": [3.0, 4.0]}, {"ci95": [1.0, 2.0]}, higher_is_better=False)  # an error: above is worse
    assert not is_worse({"ci95": [None, None]}, {"ci95": [0.7, 0.8]}, higher_is_better=True)

    values = np.array([0.9] * 20 + [0.2] * 10 + [0.88] * 20)
    labels = ["a"] * 20 + ["bad"] * 10 + ["c"] * 20

    def measure(index: np.ndarray) -> dict:
        v = values[index]
        return {"score": {"value": float(v.mean()), "ci95": [float(v.min()), float(v.max())]}, "n": len(index)}

    result = subgroup_metrics(subgroups_of("site", labels), measure, headline="score", higher_is_better=True)
    assert result["flagged"] == ["bad"]
    assert result["groups"]["bad"]["rest"]["n_cases"] == 40 and result["groups"]["bad"]["metrics"]["n"] == 10
