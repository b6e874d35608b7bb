"""Patient-level, stratified, seeded splits for data that arrives without them."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np

from medlens.data.dataset import Case

log = logging.getLogger(__name__)


def assign_splits(
    cases: list[Case],
    strata: list[str] | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[Case]:
    """Give every case with an empty ``split`` one of train/val/test, keeping each patient in one split.

    Patients are grouped, then each stratum (for example the class of the patient's first case) is shuffled
    with ``seed`` and cut by the fractions, so class balance is kept in every split. Cases that already have
    a split keep it, and the unsplit cases of a patient who already has a split join that split.

    Hand-written because scikit-learn's ``StratifiedGroupKFold`` gives equal folds only (no 70/10/20 cut)
    and ``GroupShuffleSplit`` does not stratify.

    Example:
        >>> cs = [Case(str(i), f"p{i // 2}", [f"{i}.png"], str(i % 2)) for i in range(20)]
        >>> out = assign_splits(cs, [c.target for c in cs], seed=1)
        >>> sorted({c.split for c in out})
        ['test', 'train', 'val']
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"split fractions val={val_fraction} test={test_fraction} must leave cases to train on")
    strata = strata if strata is not None else ["" for _ in cases]
    # a patient who already has a split keeps it for the rest of their cases (no patient in two splits)
    given = {c.patient_id: c.split for c in cases if c.split}
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        if not case.split:
            if case.patient_id in given:
                case.split = given[case.patient_id]
            else:
                by_patient[case.patient_id].append(i)
    patient_stratum = {p: strata[idx[0]] for p, idx in by_patient.items()}
    groups: dict[str, list[str]] = defaultdict(list)
    for patient, stratum in patient_stratum.items():
        groups[stratum].append(patient)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in sorted(groups):
        patients = sorted(groups[stratum])
        rng.shuffle(patients)
        n = len(patients)
        n_test = round(n * test_fraction)
        n_val = round(n * val_fraction)
        if n >= 3:  # every split gets at least one patient of the stratum when the fractions ask for it
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
        for j, patient in enumerate(patients):
            assignment[patient] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    for patient, idx in by_patient.items():
        for i in idx:
            cases[i].split = assignment[patient]
    counts = Counter(c.split for c in cases)
    log.info("splits: %s", ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")))
    return cases
