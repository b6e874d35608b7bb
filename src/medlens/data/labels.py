"""Few labels: keep the labels of a stratified, patient-level share of the training cases, and leave the rest of
the training images in the dataset unlabeled.

Unlabeled cases have the split ``unlabeled`` and an empty target: :meth:`Dataset.split` never returns them, so
training, validation and evaluation see only labelled cases, while ``medlens pretrain`` reads their images
(:meth:`Dataset.unlabeled`). Validation and test cases are never touched. ``dataset.yaml`` records the share and
the seed under ``labels``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace

import numpy as np

from medlens.core.errors import ConfigError
from medlens.data.dataset import UNLABELED, Case, DatasetSpec, LabelSubset

log = logging.getLogger(__name__)


def label_strata(cases: list[Case]) -> list[str]:
    """The stratum of each case's label: the target itself for class indices and label flags, the quintile for
    numbers with fractions (regression), one stratum for everything else (mask or boxes paths)."""
    targets = [c.target for c in cases]
    try:
        values = [float(t) for t in targets]
    except ValueError:
        flags = all(t and all(p in ("0", "1") for p in t.split(";")) for t in targets)
        return list(targets) if flags else ["" for _ in cases]
    if all(v == round(v) for v in values):
        return list(targets)
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    return [f"q{int(np.searchsorted(edges, v))}" for v in values]


def keep_label_fraction(
    cases: list[Case], fraction: float, seed: int = 0, strata: list[str] | None = None
) -> list[Case]:
    """Keep the labels of ``fraction`` of the training patients in each label stratum; the other training cases
    become unlabeled (split ``unlabeled``, empty target). Validation, test and unsplit cases are returned as given.

    Patients are kept whole (every training case of a patient is labelled, or none), the patients of each stratum
    (the label of the patient's first training case) are shuffled with ``seed``, and each stratum keeps
    ``round(n * fraction)`` patients but at least one, so no class vanishes however small the fraction.

    Hand-written: scikit-learn's ``StratifiedGroupKFold`` gives equal folds only and ``GroupShuffleSplit`` does not
    stratify (the same reason as :func:`medlens.data.splits.assign_splits`).

    Raises:
        ConfigError: a fraction outside (0, 1].

    Example:
        >>> cs = [Case(str(i), f"p{i // 2}", [f"{i}.png"], str(i % 2), "train") for i in range(40)]
        >>> out = keep_label_fraction(cs, 0.25, seed=1)
        >>> sum(c.split == "train" for c in out), sum(c.split == "unlabeled" for c in out)
        (10, 30)
    """
    if not 0 < fraction <= 1:
        raise ConfigError("--label-fraction", f"must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(cases)
    train = [i for i, c in enumerate(cases) if c.split == "train"]
    all_strata = [strata[i] for i in train] if strata is not None else label_strata([cases[i] for i in train])
    patient_stratum: dict[str, str] = {}
    for i, stratum in zip(train, all_strata, strict=True):
        patient_stratum.setdefault(cases[i].patient_id, stratum)
    groups: dict[str, list[str]] = defaultdict(list)
    for patient, stratum in patient_stratum.items():
        groups[stratum].append(patient)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for stratum in sorted(groups):
        patients = sorted(groups[stratum])
        rng.shuffle(patients)
        keep.update(patients[: max(1, round(len(patients) * fraction))])
    out = [c if c.split != "train" or c.patient_id in keep else replace(c, split=UNLABELED, target="") for c in cases]
    log.info(
        "labels kept for %d of %d training cases (fraction %s, seed %d, %d strata)",
        sum(c.split == "train" for c in out),
        len(train),
        fraction,
        seed,
        len(groups),
    )
    return out


def apply_label_fraction(
    spec: DatasetSpec, cases: list[Case], fraction: float, seed: int, strata: list[str] | None = None
) -> tuple[DatasetSpec, list[Case]]:
    """:func:`keep_label_fraction` for an importer: the spec records the fraction and seed (unchanged at 1)."""
    if fraction == 1:
        return spec, cases
    kept = keep_label_fraction(cases, fraction, seed, strata)
    return spec.model_copy(update={"labels": LabelSubset(fraction=fraction, seed=seed)}), kept
