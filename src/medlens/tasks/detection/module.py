"""2D object detection: the network from the plan, the training step, and validation mAP.

Losses come from the torchvision detectors themselves (focal + GIoU for RetinaNet, and so on); validation
computes COCO mAP@.5 (``val_map50``, the monitor) and mAP@[.5:.95] with :mod:`.metrics`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from medlens.tasks.detection.config import DetectionPlan
from medlens.training.budget import BudgetSchedule

RAW_DETECTIONS = 2000  # boxes kept per image and member before merge's NMS
GRADIENT_CLIP_NORM = 10.0  # from-scratch detectors meet huge early gradients from the box regression


def build_network(plan: DetectionPlan) -> nn.Module:
    """The detector of ``plan`` (``model.name`` is a registered detector), with ``model.pretrained`` loaded."""
    from medlens.models import create_model
    from medlens.models.detectors import load_detector_weights

    d = plan.detection
    extra: dict[str, Any] = {
        "image_mean": plan.data.mean,
        "image_std": plan.data.std,
        "score_thresh": d.eval_score_threshold,
        "nms_thresh": d.nms_iou,
        "detections_per_img": d.detections_per_image,
        "anchor_sizes": d.anchor_sizes,
        "aspect_ratios": d.aspect_ratios,
        "short_sides": d.train_short_sides,
    }
    net = create_model(
        plan.model.name,
        output="boxes",
        spatial_dims=2,
        in_channels=plan.data.channels,
        num_classes=len(plan.class_names),
        input_size=plan.data.input_size,
        **plan.model.kwargs,
        **extra,
    )
    if plan.model.pretrained:
        load_detector_weights(net, plan.model.pretrained)
    return net


def to_image_boxes(output: dict[str, torch.Tensor], scale: tuple[float, float] = (1.0, 1.0)) -> Any:
    """A detector output (labels 1..K) as :class:`ImageBoxes` (labels 0..K-1), boxes divided by ``scale``."""
    from medlens.tasks.detection.metrics import ImageBoxes

    factor = np.array([scale[1], scale[0], scale[1], scale[0]], dtype=np.float64)
    return ImageBoxes(
        output["boxes"].detach().float().cpu().numpy().astype(np.float64) / factor,
        output["labels"].detach().cpu().numpy() - 1,
        output["scores"].detach().float().cpu().numpy().astype(np.float64),
    )


class DetectionModule(pl.LightningModule):
    """The training step of a detector; every number comes from the plan."""

    def __init__(self, plan: DetectionPlan, budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"plan": plan.model_dump()})
        self.plan = plan
        self.net = build_network(self.plan)
        self.budget = budget
        self._preds: list[Any] = []
        self._truths: list[Any] = []

    def forward(self, images: list[torch.Tensor]) -> Any:
        return self.net(images)

    def training_step(self, batch: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]], batch_idx: int) -> Any:
        images, targets = batch
        losses = self.net(images, targets)
        loss = sum(losses.values())
        n = len(images)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        for name, value in losses.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]], batch_idx: int) -> None:
        from medlens.tasks.detection.metrics import ImageBoxes

        images, targets = batch
        for output, target in zip(self.net(images), targets, strict=True):
            self._preds.append(to_image_boxes(output))
            self._truths.append(
                ImageBoxes(target["boxes"].cpu().numpy().astype(np.float64), target["labels"].cpu().numpy() - 1)
            )

    def on_validation_epoch_end(self) -> None:
        from medlens.tasks.detection.metrics import detection_metrics

        if not self._preds:
            return
        m = detection_metrics(self._preds, self._truths, self.plan.class_names, n_bootstrap=0)
        self._preds.clear()
        self._truths.clear()
        self.log("val_map50", float(m["map50"]["value"] or 0.0), prog_bar=True)
        self.log("val_map", float(m["map"]["value"] or 0.0), prog_bar=True)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        self.clip_gradients(optimizer, gradient_clip_val=GRADIENT_CLIP_NORM, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> Any:
        from medlens.training.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)


def set_unsuppressed(net: nn.Module) -> None:
    """Make a detector return every box above its evaluation score, without NMS (IoU 1.0 suppresses nothing);
    :func:`merge` suppresses afterwards, over every member's boxes together."""
    from medlens.models.detectors import postprocess_of, set_postprocess

    set_postprocess(net, score=postprocess_of(net)[0], nms=1.0, detections=RAW_DETECTIONS)


@torch.inference_mode()
def detect_raw(net: nn.Module, images: list[torch.Tensor], batch_size: int = 4) -> list[dict[str, torch.Tensor]]:
    """Every detection above the plan's evaluation score, before NMS (merged and suppressed by :func:`merge`)."""
    from medlens.models.detectors import postprocess_of, set_postprocess

    was_training = net.training
    score, nms, detections = postprocess_of(net)
    net.eval()
    set_unsuppressed(net)
    try:
        outputs: list[dict[str, torch.Tensor]] = []
        for i in range(0, len(images), batch_size):
            outputs.extend(net([im.float() for im in images[i : i + batch_size]]))
    finally:
        set_postprocess(net, score=score, nms=nms, detections=detections)
        net.train(was_training)
    return outputs


def merge(raw: list[dict[str, torch.Tensor]], nms_iou: float, max_dets: int) -> dict[str, torch.Tensor]:
    """One image's detections from one or several members: class-wise NMS, then the top ``max_dets``.

    Several seeds' boxes are pooled before NMS (a simple ensemble; weighted box fusion would average them).
    """
    from torchvision.ops import batched_nms

    labels = torch.cat([r["labels"] for r in raw])
    objects = labels > 0  # label 0 is the background head of the sigmoid detectors: it can pass a low score threshold
    boxes = torch.cat([r["boxes"] for r in raw])[objects]
    scores = torch.cat([r["scores"] for r in raw])[objects]
    labels = labels[objects]
    keep = batched_nms(boxes, scores, labels, nms_iou)[:max_dets]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
