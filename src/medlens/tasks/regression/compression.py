"""A regressor's part in compression: a student trained on a teacher bundle's values (knowledge distillation for a
value: the teacher's mean over its members is the soft target).

Loss, per batch: ``soft_weight * loss(student, teacher value) + (1 - soft_weight) * loss(student, label)`` (labelled
images only), ``loss`` being the plan's own (MSE, L1 or Huber on standardised values). A temperature has no meaning
for a value and is not used. The teacher's values are computed once, on the un-augmented images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, TensorDataset

from medlens.core.image import Image
from medlens.models.bundle import Bundle
from medlens.tasks.base import Distillation
from medlens.tasks.regression.config import RegressionPlan
from medlens.tasks.regression.module import RegressionModule
from medlens.training.augment import augment_batch
from medlens.training.budget import BudgetSchedule
from medlens.training.images import ImageCases, normalize
from medlens.training.members import Member


class DistillationModule(RegressionModule):
    """The regressor's training step on the teacher's values and the labels; validation as in training."""

    def __init__(self, plan: RegressionPlan, budget: BudgetSchedule | None, soft_weight: float) -> None:
        super().__init__(plan, budget)
        self.soft_weight = soft_weight

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, soft, y, labelled = batch
        x = augment_batch(normalize(x, self.plan.data), self.plan.augment)
        output = self(x)
        loss = self.soft_weight * self.loss(output, soft)
        if bool(labelled.any()) and self.soft_weight < 1:
            loss = loss + (1 - self.soft_weight) * self.loss(output[labelled], y[labelled])
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss


def distiller(
    teacher: Bundle,
    plan: RegressionPlan,
    prepared: ImageCases,
    member: Member,
    unlabeled: Sequence[Image],
    *,
    temperature: float,
    soft_weight: float,
) -> Distillation:
    """Training batches of (image, teacher's value, label, labelled?) over the member's training cases and the
    unlabeled images; validation on the member's validation cases."""
    from medlens.tasks.regression.prediction import member_values
    from medlens.training.images import to_input

    x = prepared.inputs(member.train)  # (N, C, *size) raw units
    _, y, _ = prepared.subset(member.train)
    y = y.float()
    labelled = torch.ones(len(x), dtype=torch.bool)
    if unlabeled:
        extra = torch.stack([torch.from_numpy(to_input(image, plan.data)) for image in unlabeled])
        x = torch.cat([x, extra])
        y = torch.cat([y, torch.zeros(len(extra))])
        labelled = torch.cat([labelled, torch.zeros(len(extra), dtype=torch.bool)])
    soft = torch.from_numpy(member_values(teacher, x).mean(0)).float()  # (N,) the teacher's values
    t = plan.train
    train = DataLoader(
        TensorDataset(x, soft, y, labelled),
        batch_size=t.batch_size,
        shuffle=True,
        drop_last=len(x) > t.batch_size,
        generator=torch.Generator().manual_seed(t.seed),
    )
    val = prepared.loader(member.val, batch_size=max(t.batch_size, 64), shuffle=False)
    n = int(labelled.sum())
    loss = (
        f"{soft_weight:g} x the plan's {plan.regression.loss} loss to the teacher's mean value on {len(x)} images ({n} "
        f"labelled, {len(x) - n} unlabeled) + {1 - soft_weight:g} x the same loss to the labels (no temperature)"
    )
    return Distillation(
        train=train, val=val, module=lambda budget: DistillationModule(plan, budget, soft_weight), loss=loss
    )
