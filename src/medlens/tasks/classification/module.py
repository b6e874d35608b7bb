"""The classifier's network and training step: loss, batch augmentation and validation AUC."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from medlens.tasks.classification.config import ClassificationPlan
from medlens.training.augment import augment_batch
from medlens.training.budget import BudgetSchedule
from medlens.training.images import normalize


def build_network(plan: ClassificationPlan) -> nn.Module:
    from medlens.models import create_model

    return create_model(
        plan.model.name,
        output="image",
        spatial_dims=plan.spatial_dims,
        in_channels=plan.data.channels,
        num_classes=len(plan.class_names),
        input_size=plan.data.input_size,
        pretrained=plan.model.pretrained,
        dropout=plan.model.dropout,
        private=plan.train.privacy is not None,
        **plan.model.kwargs,
    )


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Softmax for single-label tasks, sigmoid per label for multi-label."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


class ClassificationModule(pl.LightningModule):
    """The training step of a classifier; every number comes from the plan."""

    def __init__(self, plan: ClassificationPlan, budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"plan": plan.model_dump()})
        self.plan = plan
        self.net = build_network(self.plan)
        weights = self.plan.classification.class_weights
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32) if weights else None)
        self.budget = budget
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.plan.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y)
        weight = self.class_weights if isinstance(self.class_weights, torch.Tensor) else None
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=self.plan.classification.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = augment_batch(normalize(x, self.plan.data), self.plan.augment)
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(normalize(x, self.plan.data))
        self.log("val_loss", self.loss(logits, y), on_epoch=True, batch_size=len(x))
        self._val_probs.append(probabilities(logits.float(), self.plan.multilabel).cpu())
        self._val_targets.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        from torchmetrics.functional.classification import (
            binary_auroc,
            multiclass_accuracy,
            multiclass_auroc,
            multilabel_auroc,
        )

        if not self._val_probs:
            return
        probs, y = torch.cat(self._val_probs), torch.cat(self._val_targets)
        self._val_probs.clear()
        self._val_targets.clear()
        k = probs.shape[1]
        if self.plan.multilabel:
            auc = multilabel_auroc(probs, y.int(), num_labels=k)
            acc = ((probs > 0.5).int() == y.int()).float().mean()
        elif k == 2:
            auc = binary_auroc(probs[:, 1], y)
            acc = multiclass_accuracy(probs, y, num_classes=k, average="micro")
        else:
            auc = multiclass_auroc(probs, y, num_classes=k)
            acc = multiclass_accuracy(probs, y, num_classes=k, average="micro")
        self.log("val_auc", auc, prog_bar=True)
        self.log("val_acc", acc, prog_bar=True)

    def configure_optimizers(self) -> Any:
        from medlens.training.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)
