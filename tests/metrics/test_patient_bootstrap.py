"""Patients, not images: resampling keeps a patient's images together, correlated images widen the intervals, and
BCa intervals equal scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medlens.metrics import bootstrap as bs
from medlens.tasks.classification.metrics import classification_metrics
from medlens.tasks.regression.metrics import regression_metrics


def test_a_patients_images_are_drawn_together() -> None:
    patients = ["p0", "p0", "p1", "p2", "p2", "p2", "p3"]
    groups = bs.group_index(patients)
    assert groups is not None and groups.tolist() == [0, 0, 1, 2, 2, 2, 3]
    weights = np.concatenate(list(bs.resample_weights(len(patients), 500, 0, groups)))  # (B, N)
    for g in range(4):
        members = np.flatnonzero(groups == g)
        assert (weights[:, members] == weights[:, members[:1]]).all()  # the same count for each of its images
    patient_counts = weights[:, [0, 2, 3, 6]]  # one image per patient: the patients' draws
    assert (patient_counts.sum(axis=1) == 4).all()  # 4 patients drawn with replacement
    sizes = weights.sum(axis=1)
    assert sizes.min() < 7 < sizes.max()  # a resample holds as many images as its patients have
    assert bs.group_index(["a", "b", "c"]) is None  # every case its own patient: cases are resampled


def _two_images_per_patient(n_patients: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each patient's two images are alike (the same label and nearly the same score)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, n_patients)
    p = np.clip(0.35 * y + 0.65 * rng.random(n_patients), 0, 1)
    return (
        np.repeat(y, 2),
        np.repeat(p, 2) + rng.normal(0, 1e-3, 2 * n_patients).clip(-0.001, 0.001),
        [f"p{i // 2}" for i in range(2 * n_patients)],
    )


def test_two_images_per_patient_give_wider_intervals_than_independent_images() -> None:
    y, p, patients = _two_images_per_patient(60)
    prob = np.clip(p, 0, 1)
    by_image = classification_metrics(y, prob, task="binary", class_names=["a", "b"], n_bootstrap=800)
    by_patient = classification_metrics(
        y, prob, task="binary", class_names=["a", "b"], n_bootstrap=800, groups=bs.group_index(patients)
    )
    for key in ("auc", "accuracy", "sensitivity"):
        lo, hi = by_image[key]["ci95"]
        plo, phi = by_patient[key]["ci95"]
        assert (phi - plo) > 1.2 * (hi - lo), key  # about sqrt(2) wider: half as many independent units
    assert by_patient["bootstrap"]["unit"] == "patient" and by_patient["bootstrap"]["n_units"] == 60
    assert by_image["bootstrap"]["unit"] == "case"
    truth = np.repeat(np.random.default_rng(4).normal(size=60), 2)
    predicted = truth + np.repeat(np.random.default_rng(5).normal(size=60), 2)
    independent = regression_metrics(truth, predicted, n_bootstrap=800)
    grouped = regression_metrics(truth, predicted, n_bootstrap=800, groups=bs.group_index(patients))
    for key in ("mae", "r2"):
        assert np.ptp(grouped[key]["ci95"]) > 1.2 * np.ptp(independent[key]["ci95"]), key


def test_bca_equals_scipy_directly() -> None:
    rng = np.random.default_rng(6)
    values = rng.gamma(2.0, 1.0, 80)  # skewed: BCa differs from the percentile interval here
    ours = bs.bca_entry(values, n_bootstrap=2000, seed=7)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(7))
    assert ours["value"] == pytest.approx(values.mean())
    assert ours["ci95"] == pytest.approx([theirs.confidence_interval.low, theirs.confidence_interval.high])
    percentile = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(7)
    )
    assert ours["ci95"][1] != pytest.approx(percentile.confidence_interval.high, abs=1e-6)


def test_bca_over_patients_is_the_bca_of_the_patients_means_for_equal_groups() -> None:
    rng = np.random.default_rng(8)
    per_patient = rng.gamma(2.0, 1.0, 40)
    images = np.repeat(per_patient, 3)  # three identical images per patient
    groups = bs.group_index([f"p{i // 3}" for i in range(120)])
    grouped = bs.bca_entry(images, groups=groups, n_bootstrap=1000, seed=1)
    alone = bs.bca_entry(per_patient, n_bootstrap=1000, seed=1)
    assert grouped["ci95"] == pytest.approx(alone["ci95"])
    assert np.ptp(bs.bca_entry(images, n_bootstrap=1000, seed=1)["ci95"]) < 0.7 * np.ptp(grouped["ci95"])


def test_bca_ratio_and_undefined_cases() -> None:
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan, 7.0])
    assert bs.bca_entry(values, n_bootstrap=0)["value"] == pytest.approx(4.0)  # undefined cases left out
    kept = np.array([1.0, 0, 1, 1, 0, 1])
    right = np.array([1.0, 1, 0, 1, 0, 1])
    entry = bs.bca_entry(right * kept, denominators=kept, n_bootstrap=200)
    assert entry["value"] == pytest.approx(3 / 4)  # right among the kept
    same = bs.bca_entry(np.ones(10), n_bootstrap=100)
    assert same["ci95"] == [1.0, 1.0] and "percentile" in same["note"]  # BCa undefined: percentile, said so
