"""Training data of a regressor (whole images with their values) and its validation figures."""

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
from medlens.metrics.cases import worst_cases
from medlens.tasks.base import Calibration
from medlens.tasks.regression.config import RegressionPlan
from medlens.training.images import ImageCases
from medlens.training.members import Member


def prepare(dataset: Dataset, plan: RegressionPlan, cases: Sequence[Case], progress: ProgressFn | None) -> ImageCases:
    from medlens.tasks.regression.evaluation import target_values

    values = torch.from_numpy(target_values(dataset, cases).astype(np.float32))
    return ImageCases(dataset, cases, values, plan.data, progress)


def loaders(plan: RegressionPlan, prepared: ImageCases, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
    t = plan.train
    train = prepared.loader(member.train, batch_size=t.batch_size, shuffle=True, seed=t.seed, num_workers=t.num_workers)
    val = prepared.loader(member.val, batch_size=max(t.batch_size, 64), shuffle=False, num_workers=t.num_workers)
    return train, val


@torch.inference_mode()
def calibrate(
    plan: RegressionPlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: ImageCases
) -> Calibration:
    """The split-conformal interval's half-width on validation (absolute residuals of the ensemble, at
    ``regression.conformal_level``); the ensemble's validation MAE is recorded for the model card."""
    from medlens.metrics.conformal import conformal_quantile
    from medlens.tasks.regression.module import to_value
    from medlens.training.images import normalize

    by_case: dict[str, list[float]] = defaultdict(list)
    truth: dict[str, float] = {}
    for net, member in zip(nets, members, strict=True):
        x = prepared.inputs(member.val)
        _, y, _ = prepared.subset(member.val)
        values = torch.cat([to_value(net(normalize(x[i : i + 64], plan.data)), plan) for i in range(0, len(x), 64)])
        for case, v, t in zip(member.val, values.tolist(), y.tolist(), strict=True):
            by_case[case.case_id].append(v)
            truth[case.case_id] = t
    errors = [abs(float(np.mean(v)) - truth[k]) for k, v in by_case.items()]
    mae = float(np.mean(errors)) if errors else None
    level = plan.regression.conformal_level
    half = conformal_quantile(np.array(errors), level) if errors else float("inf")
    applied = {"conformal_level": level, "interval_half_width": None if not np.isfinite(half) else float(half)}
    worst = worst_cases(list(by_case), errors, metric="absolute error", higher_is_worse=True)
    return Calibration(
        plan,
        info={"val_mae_ensemble": mae},
        summary={"val_mae_ensemble": mae, **applied},
        applied=applied,
        worst_cases=worst,
    )
