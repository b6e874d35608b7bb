"""The segmentation network from the plan and its training step (the plan's loss, deep supervision), with
validation Dice on whole cases through MONAI's Gaussian sliding window."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from medlens.tasks.segmentation.config import SegmentationPlan
from medlens.training.budget import BudgetSchedule


def build_network(plan: SegmentationPlan) -> nn.Module:
    """The plan's DynUNet (or another registered segmentation network) from the model registry."""
    from medlens.models import create_model

    seg = plan.segmentation
    kwargs: dict[str, Any] = dict(plan.model.kwargs)
    if plan.model.name == "dynunet":
        kwargs.setdefault("kernels", seg.kernels)
        kwargs.setdefault("strides", seg.strides)
        kwargs.setdefault("filters", seg.filters)
        kwargs.setdefault("deep_supervision", seg.deep_supervision)
        kwargs.setdefault("deep_supervision_heads", seg.deep_supervision_heads)
    return create_model(
        plan.model.name,
        output="pixel",
        spatial_dims=plan.spatial_dims,
        in_channels=plan.data.channels,
        num_classes=len(plan.class_names),
        input_size=plan.data.input_size,
        pretrained=plan.model.pretrained,
        dropout=plan.model.dropout,
        **kwargs,
    )


class SegmentationModule(pl.LightningModule):
    """Training step of a segmentation network; every number comes from the plan."""

    def __init__(self, plan: SegmentationPlan, budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.save_hyperparameters({"plan": plan.model_dump()})
        self.plan = plan
        self.net = build_network(self.plan)
        weights = {"dice_ce": (1.0, 1.0), "dice": (1.0, 0.0), "ce": (0.0, 1.0)}[plan.segmentation.loss]
        self.loss_fn = DiceCELoss(
            to_onehot_y=True, softmax=True, batch=True, lambda_dice=weights[0], lambda_ce=weights[1]
        )
        self.budget = budget
        self._val_dice: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch[0].float(), batch[1].long()
        out = self(x)
        if out.dim() == x.dim() + 1:  # deep supervision: (B, 1 + heads, K, *spatial), all at full size
            weights = torch.tensor([0.5**i for i in range(out.shape[1])])
            weights = weights / weights.sum()
            loss = sum(w * self.loss_fn(out[:, i], y) for i, w in enumerate(weights))
        else:
            loss = self.loss_fn(out, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss  # type: ignore[return-value]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        from medlens.tasks.segmentation.inference import sliding_window_probabilities
        from medlens.tasks.segmentation.metrics import dice_per_class

        image, label = batch  # one whole case: (1, C, *spatial), (1, 1, *spatial)
        pred = sliding_window_probabilities([self.net], image[0], self.plan).argmax(0)
        dice = dice_per_class(pred.cpu().numpy(), label[0, 0].cpu().numpy(), len(self.plan.class_names))
        self._val_dice.append(torch.from_numpy(dice))

    def on_validation_epoch_end(self) -> None:
        if not self._val_dice:
            return
        per_case = torch.stack(self._val_dice)  # (N, K-1)
        self._val_dice.clear()
        per_class = torch.nanmean(per_case, dim=0)
        mean = torch.nanmean(per_class)
        self.log("val_dice", mean if not torch.isnan(mean) else torch.tensor(0.0), prog_bar=True)
        for k, value in enumerate(per_class.tolist(), start=1):
            self.log(f"val_dice_{k}", value if value == value else 0.0)

    def configure_optimizers(self) -> Any:
        from medlens.training.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)
