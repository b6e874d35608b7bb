"""Training data and the operating point of a classifier.

Cases are read once (resized, in memory when the plan says so); each member gets loaders over its own train
and val cases. After training, what prediction applies is chosen on validation (seeds: every member on the val
split, averaged; folds: each case by the member that held it out): the temperature that calibrates the
probabilities, then on the calibrated probabilities the binary operating threshold (Youden's J; each member's own
threshold is kept for per-member figures), the referral threshold and the conformal quantile
(:mod:`medlens.tasks.classification.uncertainty`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset
from medlens.tasks.base import Calibration
from medlens.tasks.classification.config import ClassificationPlan
from medlens.training.images import ImageCases
from medlens.training.members import Member


def targets_of(dataset: Dataset, cases: Sequence[Case]) -> torch.Tensor:
    """Class indices (N,) for classification, 0/1 flags (N, L) as float for multi-label."""
    if dataset.spec.task == "multilabel":
        return torch.tensor([dataset.label_vector(c) for c in cases], dtype=torch.float32)
    return torch.tensor([dataset.class_index(c) for c in cases], dtype=torch.int64)


def prepare(
    dataset: Dataset, plan: ClassificationPlan, cases: Sequence[Case], progress: ProgressFn | None
) -> ImageCases:
    return ImageCases(dataset, cases, targets_of(dataset, cases), plan.data, progress)


def loaders(plan: ClassificationPlan, prepared: ImageCases, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
    t = plan.train
    train = prepared.loader(member.train, batch_size=t.batch_size, shuffle=True, seed=t.seed, num_workers=t.num_workers)
    val = prepared.loader(member.val, batch_size=max(t.batch_size, 64), shuffle=False, num_workers=t.num_workers)
    return train, val


@torch.inference_mode()
def _logits(net: nn.Module, x: torch.Tensor, plan: ClassificationPlan, batch_size: int = 64) -> np.ndarray:
    from medlens.training.images import normalize

    chunks = [net(normalize(x[i : i + batch_size], plan.data)).float() for i in range(0, len(x), batch_size)]
    return torch.cat(chunks).numpy()


def calibrate(
    plan: ClassificationPlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: ImageCases
) -> Calibration:
    """Chosen on validation: the temperature, the binary operating threshold (and each member's), the referral
    threshold and the conformal quantile (see :mod:`medlens.tasks.classification.uncertainty`)."""
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.classification.metrics import choose_threshold, truth_probability
    from medlens.tasks.classification.prediction import metric_task
    from medlens.tasks.classification.uncertainty import choose_on_validation

    per_member: list[dict[str, np.ndarray]] = []
    for net, member in zip(nets, members, strict=True):
        logits = _logits(net, prepared.inputs(member.val), plan)
        per_member.append({case.case_id: z for case, z in zip(member.val, logits, strict=True)})
    cases = [c for c in prepared.cases if any(c.case_id in m for m in per_member)]
    k = len(plan.class_names)
    logits = np.zeros((len(members), len(cases), k), dtype=np.float64)  # (M, N, K)
    mask = np.zeros((len(members), len(cases)), dtype=bool)  # (M, N) who predicted which case
    for m, found in enumerate(per_member):
        for i, case in enumerate(cases):
            if case.case_id in found:
                logits[m, i], mask[m, i] = found[case.case_id], True
    _, y, _ = prepared.subset(cases)
    task = metric_task(plan.class_names, plan.multilabel)
    options = plan.classification
    chosen = choose_on_validation(
        logits,
        mask,
        y.numpy(),
        task,
        temperature_scaling=options.temperature_scaling,
        choose_threshold=choose_threshold,
        target_accuracy=options.referral_target_accuracy,
        level=options.conformal_level,
    )
    threshold = chosen["threshold"]
    applied = {
        "temperature": chosen["temperature"],
        "referral_threshold": chosen["referral_threshold"],
        "referral_target_accuracy": options.referral_target_accuracy,
        "conformal_level": None if chosen["conformal_quantile"] is None else options.conformal_level,
        "conformal_quantile": chosen["conformal_quantile"],
    }
    return Calibration(
        plan,
        threshold=threshold,
        info={"member_thresholds": chosen["member_thresholds"], "calibration_on_validation": chosen["validation"]},
        summary={"operating_threshold": threshold, **applied, "calibration_on_validation": chosen["validation"]},
        applied=applied,
        worst_cases=worst_cases(
            [c.case_id for c in cases],
            truth_probability(y.numpy(), chosen["probabilities"], plan.multilabel).tolist(),
            metric="probability of the true class",
        ),
    )
