"""Training data of the sequence task (every subject encoded once, in memory) and its validation figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.data.dataset import Case, Dataset
from medlens.metrics.cases import worst_cases
from medlens.tasks.base import Calibration
from medlens.tasks.sequence.config import SequencePlan
from medlens.tasks.sequence.table import dataset_visits, encode_subjects
from medlens.training.members import Member


@dataclass
class Subjects:
    """Encoded subjects by case ID: visits ``(N, V, F)``, mask ``(N, V)``, outcome ``(N,)``."""

    index: dict[str, int]
    x: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor

    def subset(self, cases: Sequence[Case]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.tensor([self.index[c.case_id] for c in cases], dtype=torch.long)
        return self.x[rows], self.mask[rows], self.y[rows]


def prepare(dataset: Dataset, plan: SequencePlan, cases: Sequence[Case], progress: ProgressFn | None) -> Subjects:
    table = dataset_visits(dataset, cases)
    x, mask, _ = encode_subjects(table, plan.sequence, [c.case_id for c in cases])
    report_progress(progress, "reading visits", len(cases), len(cases))
    y = np.array([dataset.class_index(c) for c in cases], dtype=np.float32)
    return Subjects(
        {c.case_id: i for i, c in enumerate(cases)}, torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(y)
    )


def loaders(plan: SequencePlan, prepared: Subjects, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
    t = plan.train
    generator = torch.Generator().manual_seed(t.seed)
    train = DataLoader(TensorDataset(*prepared.subset(member.train)), batch_size=t.batch_size, shuffle=True,
                       generator=generator)  # fmt: skip
    val = DataLoader(TensorDataset(*prepared.subset(member.val)), batch_size=max(t.batch_size, 64), shuffle=False)
    return train, val


@torch.inference_mode()
def calibrate(
    plan: SequencePlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: Subjects
) -> Calibration:
    """The ensemble's validation AUC for the model card; the operating threshold stays 0.5 (a probability)."""
    from sklearn.metrics import roc_auc_score

    by_case: dict[str, list[float]] = {}
    truth: dict[str, int] = {}
    for net, member in zip(nets, members, strict=True):
        x, mask, y = prepared.subset(member.val)
        logit, _ = net(x, mask)
        for case, p, t in zip(member.val, torch.sigmoid(logit).tolist(), y.tolist(), strict=True):
            by_case.setdefault(case.case_id, []).append(p)
            truth[case.case_id] = int(t)
    names = list(by_case)
    score = np.array([np.mean(by_case[k]) for k in names])
    target = np.array([truth[k] for k in names])
    auc = float(roc_auc_score(target, score)) if len(set(target.tolist())) == 2 else None
    errors = [float(abs(t - s)) for t, s in zip(target, score, strict=True)]
    worst = worst_cases(names, errors, metric="1 - probability of the true outcome", higher_is_worse=True)
    return Calibration(plan, threshold=0.5, info={"val_auc_ensemble": auc}, summary={"val_auc_ensemble": auc},
                       worst_cases=worst)  # fmt: skip
