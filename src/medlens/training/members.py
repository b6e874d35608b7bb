"""The members of an ensemble: seeds on the fixed split, or folds of a k-fold split, for every task alike.

A run trains several members and their average is the model. With seeds, every member trains on the train
split and is validated on the val split; with folds, train and val are pooled and cut into k groups of
patients, and member k is validated on group k (so every case is validated exactly once, out of fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import Case, Dataset


@dataclass
class Member:
    """One model of the ensemble: its folder name, seed, and the cases it trains and validates on."""

    name: str
    seed: int
    train: list[Case]
    val: list[Case]


def plan_members(dataset: Dataset, *, seeds: int = 1, folds: int | None = None, seed: int = 0) -> list[Member]:
    """The members of a run: ``seeds`` members on the fixed split, or ``folds`` over train+val.

    Raises:
        ConfigError: for fewer than one seed, or a fold count the patients cannot fill.
        InputError: when a member would have no training or no validation case.
    """
    if folds:
        pool = dataset.split("train") + dataset.split("val")
        assignment = fold_assignment(pool, folds, seed)
        members = [
            Member(
                f"fold_{k}",
                seed + k,
                [c for c, f in zip(pool, assignment, strict=True) if f != k],
                [c for c, f in zip(pool, assignment, strict=True) if f == k],
            )
            for k in range(folds)
        ]
    else:
        if seeds < 1:
            raise ConfigError("--seeds", "must be at least 1")
        # train.seed moves the members' seeds as it moves the folds' (seed_0 trains with train.seed, seed_1 with +1)
        members = [Member(f"seed_{s}", seed + s, dataset.split("train"), dataset.split("val")) for s in range(seeds)]
    for member in members:
        if not member.train or not member.val:
            raise InputError(
                dataset.root, f"{member.name}: no {'training' if not member.train else 'validation'} cases"
            )
    return members


def fold_assignment(cases: list[Case], folds: int, seed: int = 0) -> list[int]:
    """Fold index of each case, patients kept whole (scikit-learn's GroupKFold on a seeded patient order)."""
    from sklearn.model_selection import GroupKFold

    patients = sorted({c.patient_id for c in cases})
    if folds < 2 or folds > len(patients):
        raise ConfigError("--folds", f"needs 2..{len(patients)} folds for {len(patients)} patients, got {folds}")
    rank = {p: i for i, p in enumerate(np.random.default_rng(seed).permutation(patients))}
    groups = [rank[c.patient_id] for c in cases]
    assignment = [0] * len(cases)
    splitter = GroupKFold(n_splits=folds)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(cases)), groups=groups)):
        for i in held:
            assignment[int(i)] = fold
    return assignment


def needed_cases(dataset: Dataset, members: list[Member]) -> list[Case]:
    """Every case some member trains or validates on, in manifest order."""
    ids = {c.case_id for m in members for c in m.train + m.val}
    return [c for c in dataset.cases if c.case_id in ids]
