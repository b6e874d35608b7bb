"""Patient-level, stratified, seeded splits (medlens.data.splits.assign_splits)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from medlens.data.dataset import Case
from medlens.data.splits import assign_splits


def _cases(n_patients: int = 200, per_patient: int = 3, n_classes: int = 3, seed: int = 0) -> list[Case]:
    """Patients with 1..per_patient images each; a patient's images share its class; classes imbalanced."""
    rng = np.random.default_rng(seed)
    cases = []
    for p in range(n_patients):
        label = int(rng.choice(n_classes, p=np.linspace(2, 1, n_classes) / np.linspace(2, 1, n_classes).sum()))
        for k in range(int(rng.integers(1, per_patient + 1))):
            cases.append(Case(f"p{p}_{k}", f"p{p}", [f"p{p}_{k}.png"], str(label)))
    return cases


def _split(cases: list[Case], **kw) -> list[Case]:
    return assign_splits(cases, [c.target for c in cases], **kw)


def test_no_patient_in_two_splits() -> None:
    cases = _split(_cases(), seed=3)
    splits_of = defaultdict(set)
    for c in cases:
        splits_of[c.patient_id].add(c.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {c.split for c in cases} == {"train", "val", "test"}


def test_every_class_in_every_split() -> None:
    cases = _split(_cases(), seed=0)
    for split in ("train", "val", "test"):
        assert {c.target for c in cases if c.split == split} == {"0", "1", "2"}, split


def test_every_class_in_every_split_when_a_class_is_rare() -> None:
    # 3 patients of class 1 among 60: each split still gets one
    cases = [Case(f"c{i}", f"p{i}", [f"{i}.png"], "1" if i < 3 else "0") for i in range(60)]
    _split(cases, seed=5)
    assert sorted(c.split for c in cases if c.target == "1") == ["test", "train", "val"]


def test_same_seed_same_split_other_seed_different() -> None:
    a = [c.split for c in _split(_cases(), seed=7)]
    b = [c.split for c in _split(_cases(), seed=7)]
    c = [c.split for c in _split(_cases(), seed=8)]
    assert a == b
    assert a != c


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.2), (0.15, 0.15), (0.0, 0.3)])
def test_fractions_respected_by_patient(val: float, test: float) -> None:
    cases = _split(_cases(n_patients=300), val_fraction=val, test_fraction=test, seed=1)
    patients = {c.patient_id: c.split for c in cases}
    counts = Counter(patients.values())
    n = len(patients)
    # rounding happens per stratum (3 classes): at most one patient off per stratum and split
    assert abs(counts["test"] - test * n) <= 3
    assert abs(counts["val"] - val * n) <= 3
    assert counts["train"] == n - counts["test"] - counts["val"]
    if val == 0:
        assert counts["val"] == 0


def test_existing_splits_kept() -> None:
    cases = _cases(n_patients=100)
    given = {c.case_id: s for c, s in zip(cases, ["test", "", "train", ""] * len(cases), strict=False) if s}
    for c in cases:
        c.split = given.get(c.case_id, "")
    _split(cases, seed=2)
    for c in cases:
        if c.case_id in given:
            assert c.split == given[c.case_id]
        assert c.split in {"train", "val", "test"}


def test_without_strata_and_with_one_case_per_patient() -> None:
    cases = [Case(str(i), str(i), [f"{i}.png"], "0") for i in range(50)]
    assign_splits(cases, seed=0)
    assert Counter(c.split for c in cases) == {"train": 35, "test": 10, "val": 5}


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.2, 1.0)])
def test_impossible_fractions_rejected(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(_cases(n_patients=10), val_fraction=val, test_fraction=test)


def test_unsplit_cases_join_their_patients_existing_split() -> None:
    # each patient has one case already in "test" and more cases without a split (e.g. added later)
    cases = []
    for p in range(40):
        cases.append(Case(f"p{p}_old", f"p{p}", ["x.png"], str(p % 2), "test"))
        cases += [Case(f"p{p}_new{k}", f"p{p}", ["x.png"], str(p % 2)) for k in range(2)]
    _split(cases, seed=0)
    assert {c.split for c in cases} == {"test"}
