"""Self-supervised pretraining of a task's encoder without labels: SimCLR, BYOL or DINO (lightly's heads and losses),
or a masked autoencoder for vision transformers (:mod:`medlens.training.masked_autoencoder`).

The encoder is the task's own network from the model registry with its last linear layer (the classifier head)
replaced by an identity, or a U-Net's contracting path (:func:`build_encoder`), so its tensors keep the names and
shapes the task's network has and load into it by
``model.init`` (:func:`medlens.models.checkpoints.load_init`). lightly's losses take any embedding, so a 2D or 3D
MONAI or timm encoder serves alike.

The loop is written out rather than run through Lightning: it has no validation, checkpoints or early stopping,
only a wall-clock budget and an epoch cap; whichever ends first drives the learning rate (cosine to zero at that
end) and the momentum of BYOL's and DINO's teacher networks.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.core.progress import ProgressFn, report
from medlens.training.plan import AugmentPlan
from medlens.training.views import random_view, view_plan

log = logging.getLogger(__name__)
Method = Literal["simclr", "byol", "dino", "mae"]
METHODS: tuple[str, ...] = ("simclr", "byol", "dino", "mae")


def build_encoder(
    name: str,
    kwargs: dict[str, Any],
    *,
    spatial_dims: int,
    channels: int,
    input_size: list[int],
    method: str = "simclr",
) -> tuple[nn.Module, int]:
    """The registered network ``name`` as an encoder: (encoder, embedding size).

    An image network (classification, regression) loses its last linear layer (the head); a U-Net (DynUNet, the
    segmentation network) keeps its contracting path (``input_block``, ``downsamples``, ``bottleneck``) with its
    output averaged over space. For ``method="mae"`` the encoder is the network's vision transformer (a ViT
    classifier without its head, or UNETR's ``vit``: :func:`medlens.training.masked_autoencoder.mae_encoder`).
    Either way the tensors keep the names they have in the task's network.

    Raises:
        ConfigError: ``name`` is not registered, is neither an image network with a linear head nor a U-Net, or
            holds no ViT for ``mae`` (the message names ``--method``).
    """
    from medlens.models import create_model
    from medlens.models.registry import get_entry

    output = get_entry(name).output
    net = create_model(
        name,
        output=output,
        spatial_dims=spatial_dims,
        in_channels=channels,
        num_classes=2,
        input_size=input_size,
        **kwargs,
    )
    if method == "mae":
        from medlens.training.masked_autoencoder import mae_encoder

        if output == "image":
            _drop_head(net)
        return mae_encoder(net, name)
    if all(hasattr(net, part) for part in ("input_block", "downsamples", "bottleneck")):
        encoder = _UNetEncoder(net)
        with torch.no_grad():
            dim = int(encoder.eval()(torch.zeros(2, channels, *input_size)).shape[1])
        return encoder.train(), dim
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if output != "image" or not linears:
        raise ConfigError("--backbone", f"{name} is neither an image network with a linear head nor a U-Net")
    return net, _drop_head(net)


def _drop_head(net: nn.Module) -> int:
    """Replace the last linear layer of ``net`` (its head) by an identity; returns the head's input width."""
    head_name, head = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    parent, _, leaf = head_name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
    return int(head.in_features)


class _UNetEncoder(nn.Module):
    """The contracting path of a DynUNet, averaged over space: one vector per image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.input_block = net.get_submodule("input_block")
        self.downsamples = net.get_submodule("downsamples")
        self.bottleneck = net.get_submodule("bottleneck")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_block(x)
        for block in self.downsamples.children():
            x = block(x)
        return self.bottleneck(x).flatten(2).mean(2)


class _Method(nn.Module):
    """A self-supervised method: an encoder, a projection head, and the loss of two views of a batch."""

    views = 2
    encoder: nn.Module
    head: nn.Module

    def view_plan(self, spatial_dims: int) -> AugmentPlan:
        """The augmentation that makes each view."""
        return view_plan(spatial_dims)

    def finish(self) -> None:
        """Called once after training (the encoder trains in place: nothing to do)."""

    def loss(self, a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
        """The loss of two views ``a`` and ``b`` of the same images, ``fraction`` of the budget spent."""
        raise NotImplementedError

    def after_step(self, fraction: float) -> None:
        """Update after an optimiser step (the momentum networks of BYOL and DINO)."""


class _SimCLR(_Method):
    """SimCLR: NT-Xent between the projections of two views of each image."""

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.encoder = encoder
        self.head = SimCLRProjectionHead(dim, 512, 128)
        self.criterion = NTXentLoss(temperature=0.2)

    def loss(self, a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
        return self.criterion(self.head(self.encoder(a)), self.head(self.encoder(b)))


class _Teacher(_Method):
    """A method with a momentum (exponential moving average) copy of the encoder and projection head."""

    base_momentum = 0.99
    predictor: nn.Module
    teacher_encoder: nn.Module
    teacher_head: nn.Module

    def momentum(self, fraction: float) -> float:
        """Cosine from ``base_momentum`` to 1 over the budget (BYOL's and DINO's schedule)."""
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * min(fraction, 1.0)) + 1) / 2

    def after_step(self, fraction: float) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum(fraction)
        update_momentum(self.encoder, self.teacher_encoder, m)
        update_momentum(self.head, self.teacher_head, m)

    def freeze_teacher(self, teacher_head: nn.Module | None = None) -> None:
        """Make the momentum copies (``teacher_head``: a new head to copy into, for heads that cannot be deep-copied,
        such as DINO's weight-normalised one)."""
        from lightly.models.utils import deactivate_requires_grad

        self.teacher_encoder = copy.deepcopy(self.encoder)
        if teacher_head is not None:
            teacher_head.load_state_dict(self.head.state_dict())
        self.teacher_head = teacher_head if teacher_head is not None else copy.deepcopy(self.head)
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)


class _BYOL(_Teacher):
    """BYOL: the online network predicts the momentum network's projection of the other view."""

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        self.encoder = encoder
        self.head = BYOLProjectionHead(dim, 1024, 256)
        self.predictor = BYOLPredictionHead(256, 1024, 256)
        self.criterion = NegativeCosineSimilarity()
        self.freeze_teacher()

    def loss(self, a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
        pa, pb = self.predictor(self.head(self.encoder(a))), self.predictor(self.head(self.encoder(b)))
        with torch.no_grad():
            ta, tb = self.teacher_head(self.teacher_encoder(a)), self.teacher_head(self.teacher_encoder(b))
        return 0.5 * (self.criterion(pa, tb) + self.criterion(pb, ta))


class _DINO(_Teacher):
    """DINO: the student matches the centred, sharpened output of the momentum teacher on the other view."""

    base_momentum = 0.996

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead

        self.encoder = encoder
        self.head = DINOProjectionHead(dim, 512, 64, 2048, freeze_last_layer=1)
        self.criterion = DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=1)
        self.freeze_teacher(DINOProjectionHead(dim, 512, 64, 2048))

    def loss(self, a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
        student = [self.head(self.encoder(a)), self.head(self.encoder(b))]
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_encoder(a)), self.teacher_head(self.teacher_encoder(b))]
        return self.criterion(teacher, student, epoch=int(fraction > 0.1))


_METHODS: dict[str, type[_Method]] = {"simclr": _SimCLR, "byol": _BYOL, "dino": _DINO}


@dataclass
class PretrainResult:
    """What :func:`pretrain_encoder` did: the encoder's weights and the training record."""

    state: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)  # one per step
    learning_rates: list[float] = field(default_factory=list)  # one per step
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0


def pretrain_encoder(
    images: torch.Tensor,
    encoder: nn.Module,
    dim: int,
    method: str = "simclr",
    *,
    budget_minutes: float = 30.0,
    max_epochs: int = 200,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> PretrainResult:
    """Train ``encoder`` on two random views of each of ``images`` (N, C, *spatial; normalised) without labels.

    Stops at ``budget_minutes`` of wall-clock time or after ``max_epochs``, whichever comes first. Progress is
    reported as seconds of the budget (stage ``pretraining <method>``).

    Raises:
        ConfigError: an unknown method, or fewer images than two (a contrastive batch needs two).
    """
    if method not in METHODS:
        raise ConfigError("--method", f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if len(images) < 2:
        raise ConfigError("inputs", f"{len(images)} image(s): self-supervised pretraining needs at least two")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model: Any
    if method == "mae":  # one view per image; the encoder's ViT, the images' size
        from medlens.training.masked_autoencoder import build_mae

        model = build_mae(encoder, list(images.shape[2:]))
    else:
        model = _METHODS[method](encoder, dim)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    plan = model.view_plan(images.ndim - 2)
    batch = min(batch_size, len(images))
    budget = budget_minutes * 60.0
    result = PretrainResult(state={})
    start = time.perf_counter()
    elapsed = 0.0
    total_steps = max_epochs * (len(images) // batch)
    for _epoch in range(max_epochs):
        order = torch.randperm(len(images), generator=generator)
        for first in range(0, len(order) - batch + 1, batch):  # whole batches only: BatchNorm and the loss need them
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                break
            # how far along the run is: by the clock or by the epoch cap, whichever is further
            fraction = max(elapsed / budget, result.steps / total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * fraction))
            result.learning_rates.append(float(optimizer.param_groups[0]["lr"]))
            x = images[order[first : first + batch]]
            a = random_view(x, plan, generator)
            b = random_view(x, plan, generator) if model.views == 2 else None
            loss = model.loss(a, b, fraction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.after_step(fraction)
            result.losses.append(float(loss.detach()))
            result.steps += 1
            report(progress, f"pretraining {method}", int(min(budget, time.perf_counter() - start)), int(budget))
        if elapsed >= budget:
            break
    result.epochs = round(result.steps * batch / len(images), 2)
    result.seconds = round(time.perf_counter() - start, 1)
    model.finish()
    encoder.eval()
    result.state = {k: v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}
    log.info(
        "pretrained %s: %d steps (%.1f epochs of %d images) in %.0f s, last loss %.4f",
        method,
        result.steps,
        result.epochs,
        len(images),
        result.seconds,
        result.losses[-1] if result.losses else float("nan"),
    )
    return result
