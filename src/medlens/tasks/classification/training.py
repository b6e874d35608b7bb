"""Training data and the operating point of a classifier.

Cases are read once (resized, in memory when the plan says so); each member gets loaders over its own train
and val cases. After training, the binary operating threshold is chosen on validation: Youden's J on the
ensemble's probabilities (seeds: every member on the val split, averaged; folds: each case by the member
that held it out), and each member's own threshold is kept for per-member figures.
"""

from __future__ import annotations

from collections import defaultdict
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
def _probabilities(net: nn.Module, x: torch.Tensor, plan: ClassificationPlan, batch_size: int = 64) -> np.ndarray:
    from medlens.tasks.classification.module import probabilities
    from medlens.training.images import normalize

    chunks = [
        probabilities(net(normalize(x[i : i + batch_size], plan.data)).float(), plan.multilabel)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(chunks).numpy()


def calibrate(
    plan: ClassificationPlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: ImageCases
) -> Calibration:
    """The binary operating threshold (and each member's) chosen on validation; other tasks: arg-max / 0.5."""
    from medlens.tasks.classification.metrics import choose_threshold

    by_case: dict[str, list[np.ndarray]] = defaultdict(list)
    member_thresholds: list[float | None] = []
    binary = plan.task == "classification" and len(plan.class_names) == 2
    for net, member in zip(nets, members, strict=True):
        probs = _probabilities(net, prepared.inputs(member.val), plan)
        _, y, _ = prepared.subset(member.val)
        for case, p in zip(member.val, probs, strict=True):
            by_case[case.case_id].append(p)
        member_thresholds.append(float(choose_threshold(y.numpy(), probs[:, 1])) if binary else None)
    threshold = None
    if binary:
        cases = [c for c in prepared.cases if c.case_id in by_case]
        _, y, _ = prepared.subset(cases)
        mean = np.stack([np.mean(by_case[c.case_id], axis=0) for c in cases])
        threshold = float(choose_threshold(y.numpy(), mean[:, 1]))
    return Calibration(
        plan,
        threshold=threshold,
        info={"member_thresholds": member_thresholds if binary else None},
        summary={"operating_threshold": threshold},
        worst_cases=_worst_validation_cases(plan, prepared, by_case),
    )


def _worst_validation_cases(
    plan: ClassificationPlan, prepared: ImageCases, by_case: dict[str, list[np.ndarray]]
) -> list[dict[str, Any]]:
    """Validation cases whose truth got the lowest probability from the ensemble (members averaged)."""
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.classification.metrics import truth_probability

    cases = [c for c in prepared.cases if c.case_id in by_case]
    if not cases:
        return []
    _, y, _ = prepared.subset(cases)
    mean = np.stack([np.mean(by_case[c.case_id], axis=0) for c in cases])  # (N, K)
    scores = truth_probability(y.numpy(), mean, plan.multilabel)
    return worst_cases([c.case_id for c in cases], scores.tolist(), metric="probability of the true class")
