"""The members of a run: seeds on the fixed split, or folds that keep patients whole."""

from __future__ import annotations


def test_fold_assignment_keeps_patients_whole() -> None:
    from medlens.data.dataset import Case
    from medlens.training.members import fold_assignment

    cases = [Case(f"c{i}", f"p{i // 2}", ["x"], "y") for i in range(12)]
    folds = fold_assignment(cases, 3)
    for i in range(0, 12, 2):
        assert folds[i] == folds[i + 1]
    assert sorted(set(folds)) == [0, 1, 2]


def test_seed_members_share_the_fixed_split(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    from medlens.training.members import plan_members

    members = plan_members(pneumonia_dataset, seeds=3)
    assert [(m.name, m.seed) for m in members] == [("seed_0", 0), ("seed_1", 1), ("seed_2", 2)]
    moved = plan_members(pneumonia_dataset, seeds=2, seed=5)  # train.seed=5: other seeds, the same folder names
    assert [(m.name, m.seed) for m in moved] == [("seed_0", 5), ("seed_1", 6)]
    for m in members:
        assert m.train == pneumonia_dataset.split("train") and m.val == pneumonia_dataset.split("val")


def test_fold_members_validate_every_case_once(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    from medlens.training.members import plan_members

    members = plan_members(pneumonia_dataset, folds=4, seed=7)
    pool = {c.case_id for c in pneumonia_dataset.split("train") + pneumonia_dataset.split("val")}
    validated = [c.case_id for m in members for c in m.val]
    assert sorted(validated) == sorted(pool)  # each case out of fold exactly once
    for m in members:
        assert {c.case_id for c in m.train}.isdisjoint(c.case_id for c in m.val)
        assert {c.case_id for c in m.train} | {c.case_id for c in m.val} == pool
    assert [m.seed for m in members] == [7, 8, 9, 10]
    assert not {c.case_id for c in pneumonia_dataset.split("test")} & set(validated)  # test cases stay out


def test_impossible_member_counts_name_the_option(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from medlens.core.errors import ConfigError
    from medlens.training.members import plan_members

    with pytest.raises(ConfigError, match="--seeds"):
        plan_members(pneumonia_dataset, seeds=0)
    with pytest.raises(ConfigError, match="--folds"):
        plan_members(pneumonia_dataset, folds=1000)
