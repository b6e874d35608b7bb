"""Segmentation: the network from the plan, the training step (Dice + CE, deep supervision), validation on
whole cases with MONAI's Gaussian sliding window, and the predictor shared by evaluation and prediction
(fold ensemble, mirror test-time augmentation, keep-largest-component post-processing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.plan.schema import Plan
from medlens.tasks.budget import BudgetSchedule


def build_network(plan: Plan) -> nn.Module:
    """The plan's DynUNet (or another registered segmentation network) from the model registry."""
    from medlens.models import create_model

    seg = plan.segmentation
    kwargs: dict[str, Any] = dict(plan.model.kwargs)
    if seg is not None and plan.model.name == "dynunet":
        kwargs.setdefault("kernels", seg.kernels)
        kwargs.setdefault("strides", seg.strides)
        kwargs.setdefault("filters", seg.filters)
        kwargs.setdefault("deep_supervision", seg.deep_supervision)
        kwargs.setdefault("deep_supervision_heads", seg.deep_supervision_heads)
    return create_model(
        plan.model.name,
        task="segmentation",
        spatial_dims=plan.spatial_dims,
        in_channels=plan.data.channels,
        num_classes=len(plan.class_names),
        input_size=plan.data.input_size,
        pretrained=plan.model.pretrained,
        dropout=plan.model.dropout,
        **kwargs,
    )


@torch.inference_mode()
def sliding_window_probabilities(
    nets: Sequence[nn.Module], image: torch.Tensor, plan: Plan, *, tta: bool = False
) -> torch.Tensor:
    """Softmax probabilities (K, *spatial) of a preprocessed image (C, *spatial), averaged over the members
    and, with ``tta``, over every combination of mirrored axes in ``plan.segmentation.mirror_axes``."""
    from monai.inferers import sliding_window_inference

    seg = plan.segmentation
    if seg is None:
        raise ConfigError("segmentation", "the plan has no segmentation section")
    x = image[None].float()  # (1, C, *spatial)
    flips: list[tuple[int, ...]] = [()]
    if tta:
        from itertools import combinations

        axes = [a + 2 for a in seg.mirror_axes if x.shape[a + 2] > 1]
        flips = [c for r in range(len(axes) + 1) for c in combinations(axes, r)]
    total: torch.Tensor | None = None
    for net in nets:
        for flip in flips:
            xi = torch.flip(x, flip) if flip else x
            logits = sliding_window_inference(
                xi,
                roi_size=plan.data.input_size,
                sw_batch_size=seg.sw_batch_size,
                predictor=net,
                overlap=seg.sw_overlap,
                mode=seg.sw_mode,
            )
            probs = torch.softmax(cast(torch.Tensor, logits).float(), dim=1)
            probs = torch.flip(probs, flip) if flip else probs
            total = probs if total is None else total + probs
    return (cast(torch.Tensor, total) / (len(nets) * len(flips)))[0]


def keep_largest_component(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Set every voxel of ``classes`` outside that class's largest connected component to background."""
    from scipy import ndimage

    out = labels.copy()
    for k in classes:
        components, n = ndimage.label(labels == k)
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != int(np.argmax(sizes)) + 1)] = 0
    return out


def dice_per_class(pred: torch.Tensor, truth: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Dice of each foreground class (K-1,), NaN where the class is in neither map."""
    out = torch.full((n_classes - 1,), float("nan"))
    for k in range(1, n_classes):
        p, t = pred == k, truth == k
        denominator = p.sum() + t.sum()
        if denominator > 0:
            out[k - 1] = 2 * (p & t).sum().float() / denominator.float()
    return out


class SegmentationModule(pl.LightningModule):
    """Training step of a segmentation network; every number comes from the plan."""

    def __init__(self, plan: dict[str, Any], budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.model_validate(plan)
        self.net = build_network(self.plan)
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
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
        image, label = batch  # one whole case: (1, C, *spatial), (1, 1, *spatial)
        pred = sliding_window_probabilities([self.net], image[0], self.plan).argmax(0)
        self._val_dice.append(dice_per_class(pred.cpu(), label[0, 0].cpu(), len(self.plan.class_names)))

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
        from medlens.tasks.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)
