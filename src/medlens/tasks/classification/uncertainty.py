"""How sure a classifier is, what it refers to a person, and which classes it cannot rule out.

Chosen on validation after training (:func:`choose_on_validation`, stored in ``bundle.yaml`` under
``calibration:``) and applied to every prediction:

- **Temperature** ``T`` (:mod:`medlens.metrics.temperature`): every member's logits are divided by ``T`` before
  the softmax (a sigmoid per label for multi-label) and the members are averaged; ``T`` minimises the validation
  NLL of that average. The served probabilities are the calibrated ones.
- **Confidence** of a prediction: the probability of the label given (binary: ``p`` or ``1 - p`` at the operating
  threshold; multiclass: the top probability); multi-label: the least sure label's, ``min_l max(p_l, 1 - p_l)``,
  with "right" meaning every label right.
- **Referral** (:mod:`medlens.metrics.selective`): the lowest confidence cut at which the validation cases kept
  reach ``plan.classification.referral_target_accuracy``; a prediction below it has ``refer = True``.
- **Conformal prediction set** (:mod:`medlens.metrics.conformal`, LAC scores on the calibrated ensemble
  probabilities, level ``plan.classification.conformal_level``): the classes with ``p >= 1 - q``. Single-label
  tasks only: a set over labels of a multi-label task would need risk control over several labels at once
  (MAPIE's multi-label risk control), which is not done.
- **Entropy** of the served probabilities, in nats (``0`` to ``ln K``; multi-label: the mean binary entropy over
  labels), and **member disagreement**: the mutual information between the prediction and the member (BALD,
  Houlsby et al. 2011), ``H(mean p) - mean H(p_m)``, which equals the members' mean KL divergence from their
  average; 0 with one member and no test-time augmentation, in nats.

What is chosen on validation and checked on the same cases: ``T`` (one number) is fitted on the cases that then
calibrate the referral threshold and the conformal quantile; its effect on the conformal guarantee is of the order
of one case in ``n``. With folds, each validation case is predicted by the member that held it out, while
prediction averages every fold: the ensemble is a little surer than what was calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medlens.metrics import bootstrap as bs
from medlens.metrics.calibration import DEFAULT_N_BINS, calibration_pairs, expected_calibration_error
from medlens.metrics.conformal import conformal_quantile, lac_scores, lac_sets
from medlens.metrics.selective import aurc, choose_referral_threshold, curve_points, refers, risk_coverage
from medlens.metrics.temperature import ensemble_nll, fit_temperature, scaled_probabilities

_EPS = 1e-12


class ClassificationCalibration(BaseModel):
    """``bundle.yaml``'s ``calibration:`` for a classifier; every key has the default of a bundle made before it."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    temperature: float = Field(1.0, gt=0, le=1000, description="divides every member's logits")
    referral_threshold: float | None = Field(
        None, ge=0, le=1, description="confidence below which a case is referred (1.0: every case); null: none"
    )
    referral_target_accuracy: float | None = Field(None, ge=0, le=1)
    conformal_level: float | None = Field(None, gt=0, lt=1)
    conformal_quantile: float | None = Field(None, ge=0, le=1, description="sets hold classes with p >= 1 - q")


def calibration_of(bundle: Any) -> ClassificationCalibration:
    """The classifier's calibration from a bundle; a bad value is an error naming ``bundle.yaml`` and the key."""
    from medlens.core.errors import InputError
    from medlens.models.bundle import BUNDLE_FILE

    try:
        return ClassificationCalibration.model_validate(bundle.calibration or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise InputError(bundle.root / BUNDLE_FILE, f"calibration.{key}: {first['msg']}") from None


# ---- per prediction ---------------------------------------------------------------------------------------------
def entropy(prob: np.ndarray, multilabel: bool) -> np.ndarray:
    """Entropy in nats along the last axis (multi-label: mean binary entropy over labels); ``(...)``."""
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    if multilabel:
        binary = -(p * np.log(p + _EPS) + (1 - p) * np.log(1 - p + _EPS))
        return np.maximum(binary.mean(axis=-1), 0.0)
    return np.maximum(-(p * np.log(p + _EPS)).sum(axis=-1), 0.0)


def member_disagreement(per_member: np.ndarray, multilabel: bool) -> np.ndarray:
    """Mutual information ``H(mean p) - mean H(p_m)`` over the passes ``(P, N, K)``; ``(N,)`` nats, >= 0."""
    per_member = np.asarray(per_member, dtype=np.float64)
    if len(per_member) < 2:
        return np.zeros(per_member.shape[1])
    mi = entropy(per_member.mean(axis=0), multilabel) - entropy(per_member, multilabel).mean(axis=0)
    return np.maximum(mi, 0.0)


def decisions(prob: np.ndarray, task: str, threshold: float | None) -> np.ndarray:
    """The label given: ``(N,)`` class indices (binary at ``threshold``, multiclass arg-max), multi-label ``(N, L)``
    0/1 at ``threshold``."""
    cut = 0.5 if threshold is None else threshold
    if task == "binary":
        return (prob[:, 1] >= cut).astype(np.int64)
    if task == "multiclass":
        return prob.argmax(axis=1)
    return (prob >= cut).astype(np.int64)


def confidence_of(prob: np.ndarray, task: str, threshold: float | None) -> np.ndarray:
    """The probability of the label given (multi-label: of the least sure label's decision); ``(N,)``."""
    label = decisions(prob, task, threshold)
    if task == "multilabel":
        return np.where(label == 1, prob, 1 - prob).min(axis=1)
    return prob[np.arange(len(prob)), label]


def correct_of(y: np.ndarray, prob: np.ndarray, task: str, threshold: float | None) -> np.ndarray:
    """Whether the label given is right (multi-label: every label right); ``(N,)`` bool."""
    label = decisions(prob, task, threshold)
    y = np.asarray(y)
    if task == "multilabel":
        return np.all(label == y, axis=1)
    return label == y.reshape(-1)


# ---- chosen on validation ---------------------------------------------------------------------------------------
def choose_on_validation(
    logits: np.ndarray,
    mask: np.ndarray,
    y: np.ndarray,
    task: str,
    *,
    temperature_scaling: bool,
    choose_threshold: Any,
    target_accuracy: float,
    level: float,
) -> dict[str, Any]:
    """Temperature, operating threshold, referral threshold and conformal quantile from validation logits.

    Args:
        logits: ``(M, N, K)`` each member's logits on the validation cases.
        mask: ``(M, N)`` which member predicted which case (seeds: all; folds: the member that held it out).
        y: ``(N,)`` class indices, or ``(N, L)`` flags for multi-label.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        temperature_scaling: fit ``T`` (else 1).
        choose_threshold: the binary operating threshold rule, ``f(y, p1) -> float``.
        target_accuracy: the referral's target on the cases kept.
        level: the conformal level.

    Returns:
        ``{"temperature", "threshold", "member_thresholds", "referral_threshold", "conformal_quantile",
        "probabilities", "validation": {...}}``: ``probabilities`` ``(N, K)`` are the calibrated ensemble's on the
        validation cases; the validation figures are before and after scaling.
    """
    multilabel = task == "multilabel"
    t = fit_temperature(logits, y, multilabel=multilabel, mask=mask) if temperature_scaling else 1.0
    weight = mask / np.maximum(mask.sum(axis=0, keepdims=True), 1)  # (M, N)
    raw = np.einsum("mn,mnk->nk", weight, scaled_probabilities(logits, 1.0, multilabel=multilabel))
    members = scaled_probabilities(logits, t, multilabel=multilabel)  # (M, N, K)
    prob = np.einsum("mn,mnk->nk", weight, members)  # (N, K) the served probabilities
    threshold = member_thresholds = None
    if task == "binary":
        threshold = float(choose_threshold(y, prob[:, 1]))
        member_thresholds = [float(choose_threshold(y[m], p[m][:, 1])) for m, p in zip(mask, members, strict=True)]
    cut = threshold if task == "binary" else None
    referral = choose_referral_threshold(
        confidence_of(prob, task, cut), correct_of(y, prob, task, cut), target_accuracy
    )
    quantile = None
    if not multilabel:
        q = conformal_quantile(lac_scores(prob, y), level)
        quantile = min(q, 1.0)  # inf (too few cases for the level) means every class: p >= 0
    ece_before, ece_after = (
        float(expected_calibration_error(*calibration_pairs(y, p[:, 1] if task == "binary" else p, task))[0])
        for p in (raw, prob)
    )
    kept = ~refers(confidence_of(prob, task, cut), referral)
    return {
        "temperature": t,
        "threshold": threshold,
        "member_thresholds": member_thresholds,
        "referral_threshold": referral,
        "conformal_quantile": quantile,
        "probabilities": prob,
        "validation": {
            "n_cases": len(y),
            "nll_uncalibrated": round(ensemble_nll(logits, y, 1.0, multilabel=multilabel, mask=mask), 6),
            "nll": round(ensemble_nll(logits, y, t, multilabel=multilabel, mask=mask), 6),
            "ece_uncalibrated": round(ece_before, 6),
            "ece": round(ece_after, 6),
            "referred_share": round(float(1 - kept.mean()), 6),
            "accuracy_of_rest": round(float(correct_of(y, prob, task, cut)[kept].mean()), 6) if kept.any() else None,
        },
    }


# ---- measured on test -------------------------------------------------------------------------------------------
def uncertainty_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    uncalibrated: np.ndarray,
    *,
    task: str,
    threshold: float | None,
    calibration: ClassificationCalibration,
    class_names: Sequence[str],
    groups: np.ndarray | None,
    n_bootstrap: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibration, selective prediction and conformal figures of served predictions, JSON-ready.

    Args:
        y: truth (``(N,)`` class indices or ``(N, L)`` flags).
        prob: ``(N, K)`` served (calibrated) probabilities.
        uncalibrated: ``(N, K)`` the members' average without the temperature.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        threshold: the operating threshold (binary), else ``None``.
        calibration: what the bundle applies.
        class_names: the classes.
        groups: patient groups of the cases (:func:`~medlens.metrics.bootstrap.group_index`).
        n_bootstrap: resamples for the intervals.
        seed: seed of the resamples (the same as the other metrics': paired).

    Returns:
        ``ece_uncalibrated``, ``temperature``, ``aurc``, ``risk_coverage``, ``referral``, and for single-label tasks
        ``conformal_coverage``, ``conformal_set_size``, ``conformal_level``, ``conformal_quantile``,
        ``conformal_set_sizes`` (how many sets of each size).
    """
    n = len(prob)
    y = np.asarray(y)
    y_flat = y if task == "multilabel" else y.reshape(-1)
    confidence = confidence_of(prob, task, threshold)
    correct = correct_of(y_flat, prob, task, threshold)
    loss = 1.0 - correct.astype(np.float64)
    uncal_pairs = calibration_pairs(y_flat, uncalibrated[:, 1] if task == "binary" else uncalibrated, task)
    ece_point = float(expected_calibration_error(*uncal_pairs, n_bins=DEFAULT_N_BINS)[0])
    aurc_point = float(aurc(confidence, loss)[0])
    ece_samples, aurc_samples = [], []
    for w in bs.resample_weights(n, n_bootstrap, seed, groups) if n_bootstrap > 0 else []:
        ece_samples.append(expected_calibration_error(*uncal_pairs, n_bins=DEFAULT_N_BINS, weights=w))
        aurc_samples.append(aurc(confidence, loss, w))
    out: dict[str, Any] = {
        "ece_uncalibrated": bs.interval_entry(ece_point, np.concatenate(ece_samples) if ece_samples else None),
        "temperature": calibration.temperature,
        "aurc": bs.interval_entry(aurc_point, np.concatenate(aurc_samples) if aurc_samples else None),
        "risk_coverage": {
            "confidence": "probability of the label given"
            + (" (multi-label: of the least sure label; risk: any label wrong)" if task == "multilabel" else ""),
            **curve_points(*risk_coverage(confidence, loss)),
        },
    }
    out["aurc"]["random_ranking"] = round(float(loss.mean()), 6)  # the AURC of a confidence that ranks nothing
    referred = refers(confidence, calibration.referral_threshold)
    kept = (~referred).astype(np.float64)
    out["referral"] = {
        "threshold": calibration.referral_threshold,
        "target_accuracy": calibration.referral_target_accuracy,
        "chosen_on": "validation" if calibration.referral_threshold is not None else "not chosen (older bundle)",
        "n_referred": int(referred.sum()),
        "referred_share": bs.bca_entry(referred.astype(np.float64), groups=groups, n_bootstrap=n_bootstrap, seed=seed),
        "accuracy_of_rest": bs.bca_entry(
            correct * kept, denominators=kept, groups=groups, n_bootstrap=n_bootstrap, seed=seed
        ),
        "accuracy_of_referred": bs.bca_entry(
            correct * (1 - kept), denominators=1 - kept, groups=groups, n_bootstrap=n_bootstrap, seed=seed
        ),
    }
    if task != "multilabel" and calibration.conformal_quantile is not None:
        sets = lac_sets(prob, calibration.conformal_quantile)  # (N, K)
        covered = sets[np.arange(n), y_flat.astype(np.int64)].astype(np.float64)
        size = sets.sum(axis=1).astype(np.float64)
        out["conformal_level"] = calibration.conformal_level
        out["conformal_quantile"] = calibration.conformal_quantile
        out["conformal_coverage"] = bs.bca_entry(covered, groups=groups, n_bootstrap=n_bootstrap, seed=seed)
        out["conformal_set_size"] = bs.bca_entry(size, groups=groups, n_bootstrap=n_bootstrap, seed=seed)
        out["conformal_set_sizes"] = {str(k): int((size == k).sum()) for k in range(len(class_names) + 1)}
    elif task == "multilabel":
        out["conformal_note"] = "conformal sets are given for single-label tasks only"
    return out
