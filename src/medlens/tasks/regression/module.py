"""The regression network (a whole-image backbone with one output) and its training step: the loss on the
standardised target, batch augmentation, and validation MAE, RMSE and R² in the target's own unit."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from medlens.tasks.regression.config import RegressionPlan
from medlens.training.augment import augment_batch
from medlens.training.budget import BudgetSchedule
from medlens.training.images import normalize


def build_network(plan: RegressionPlan) -> nn.Module:
    from medlens.models import create_model

    return create_model(
        plan.model.name,
        output="image",
        spatial_dims=plan.spatial_dims,
        in_channels=plan.data.channels,
        num_classes=1,
        input_size=plan.data.input_size,
        pretrained=plan.model.pretrained,
        dropout=plan.model.dropout,
        private=plan.train.privacy is not None,
        **plan.model.kwargs,
    )


def to_value(output: torch.Tensor, plan: RegressionPlan) -> torch.Tensor:
    """The network's standardised output (B, 1) as values in the target's unit (B,)."""
    r = plan.regression
    return output[:, 0].float() * r.target_sd + r.target_mean


class RegressionModule(pl.LightningModule):
    """The training step of a regressor; every number comes from the plan."""

    def __init__(self, plan: RegressionPlan, budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"plan": plan.model_dump()})
        self.plan = plan
        self.net = build_network(plan)
        self.budget = budget
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.plan.regression
        target = ((y.float() - r.target_mean) / r.target_sd)[:, None]  # (B, 1) standardised
        if r.loss == "mse":
            return F.mse_loss(output.float(), target)
        if r.loss == "l1":
            return F.l1_loss(output.float(), target)
        return F.huber_loss(output.float(), target, delta=1.0)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = augment_batch(normalize(x, self.plan.data), self.plan.augment)
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        output = self(normalize(x, self.plan.data))
        self.log("val_loss", self.loss(output, y), on_epoch=True, batch_size=len(x))
        self._val.append((to_value(output, self.plan).cpu(), y.float().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        predicted = torch.cat([p for p, _ in self._val])
        truth = torch.cat([t for _, t in self._val])
        self._val.clear()
        error = predicted - truth
        sst = ((truth - truth.mean()) ** 2).sum()
        self.log("val_mae", error.abs().mean(), prog_bar=True)
        self.log("val_rmse", error.pow(2).mean().sqrt())
        self.log("val_r2", 1 - error.pow(2).sum() / sst if sst > 0 else torch.tensor(0.0), prog_bar=True)

    def configure_optimizers(self) -> Any:
        from medlens.training.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)
