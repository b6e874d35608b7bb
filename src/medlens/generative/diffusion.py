"""A small class-conditional denoising diffusion model (DDPM) on MONAI's generative networks, sampled with DDIM.

The network is MONAI's ``DiffusionModelUNet`` with a class embedding (``num_class_embeds``); training adds noise
with MONAI's ``DDPMScheduler`` and learns to predict it, and sampling runs MONAI's ``DDIMScheduler`` for a few
dozen steps. One extra class index stands for "no class": labels are dropped for 10% of training images so that
classifier-free guidance (``guidance`` > 1) is available when sampling. The weights kept are an exponential
moving average of the trained ones (torch's ``AveragedModel``), which gives cleaner images after short training.

The loop is a plain PyTorch loop rather than a Lightning module: it is one optimiser stepped until a wall-clock
budget or a step count runs out, with nothing to validate or checkpoint on the way.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from medlens.core.progress import ProgressFn, report

DEFAULT_NETWORK: dict[str, Any] = {
    "channels": [32, 64, 64],
    "num_res_blocks": 1,
    "attention_levels": [False, False, False],
    "norm_num_groups": 16,
    "num_train_timesteps": 1000,
    "schedule": "linear_beta",
}
LABEL_DROPOUT = 0.1  # share of training images shown without their class (classifier-free guidance)


def build_unet(network: dict[str, Any], in_channels: int, n_classes: int) -> nn.Module:
    """The denoising U-Net; class index ``n_classes`` means "no class"."""
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=in_channels,
        channels=tuple(network["channels"]),
        num_res_blocks=network["num_res_blocks"],
        attention_levels=tuple(network["attention_levels"]),
        norm_num_groups=network["norm_num_groups"],
        num_class_embeds=n_classes + 1,
    )


def _ema_average(decay_max: float = 0.999) -> Any:
    """EMA update with the usual warm-up: the decay grows as (1 + n) / (10 + n) up to ``decay_max``."""

    def average(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
        decay = min(decay_max, (1 + int(n)) / (10 + int(n)))
        return decay * averaged + (1 - decay) * current

    return average


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    network: dict[str, Any],
    *,
    budget_seconds: float | None,
    max_steps: int | None,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the denoiser on images ``x`` (N, C, H, W) in [-1, 1] with class indices ``y`` (N,).

    Returns:
        The averaged (EMA) network in eval mode, and what training did.
    """
    from monai.networks.schedulers import DDPMScheduler
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(seed)
    net = build_unet(network, x.shape[1], n_classes)
    ema = AveragedModel(net, avg_fn=_ema_average())
    scheduler = DDPMScheduler(num_train_timesteps=network["num_train_timesteps"], schedule=network["schedule"])
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    start, step, losses = time.monotonic(), 0, []
    net.train()
    while not _done(step, max_steps, start, budget_seconds):
        index = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        images, labels = x[index], y[index].clone()
        labels[torch.rand(len(labels), generator=generator) < LABEL_DROPOUT] = n_classes  # "no class"
        noise = torch.randn(images.shape, generator=generator)
        t = torch.randint(0, scheduler.num_train_timesteps, (len(images),), generator=generator)
        noisy = scheduler.add_noise(original_samples=images, noise=noise, timesteps=t)
        loss = nn.functional.mse_loss(net(noisy, t, class_labels=labels), noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
        ema.update_parameters(net)
        losses.append(float(loss.detach()))
        step += 1
        report(progress, "training the generator", step, max_steps)
    tail = losses[-50:]
    stats = {
        "steps": step,
        "images_seen": step * min(batch_size, len(x)),
        "seconds": round(time.monotonic() - start, 1),
        "last_loss": round(sum(tail) / len(tail), 5) if tail else None,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    return ema.module.eval(), stats


def _done(step: int, max_steps: int | None, start: float, budget_seconds: float | None) -> bool:
    if max_steps is not None and step >= max_steps:
        return True
    return budget_seconds is not None and step > 0 and time.monotonic() - start >= budget_seconds


@torch.inference_mode()
def sample(
    net: nn.Module,
    labels: torch.Tensor,
    n_classes: int,
    network: dict[str, Any],
    shape: tuple[int, int, int],
    *,
    steps: int = 50,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] of the classes ``labels`` (N,), by DDIM with ``steps`` steps.

    Args:
        guidance: classifier-free guidance scale; 1 uses the class-conditional prediction alone (one network pass
            a step), larger values push images further towards their class (two passes a step).
    """
    from monai.networks.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=network["num_train_timesteps"], schedule=network["schedule"])
    scheduler.set_timesteps(num_inference_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty((len(labels), *shape))
    batches = math.ceil(len(labels) / batch_size)
    for b in range(batches):
        y = labels[b * batch_size : (b + 1) * batch_size]
        x = torch.randn((len(y), *shape), generator=generator)
        for i, t in enumerate(scheduler.timesteps):
            timesteps = torch.full((len(y),), int(t), dtype=torch.long)
            eps = net(x, timesteps, class_labels=y)
            if guidance != 1.0:
                free = net(x, timesteps, class_labels=torch.full_like(y, n_classes))
                eps = free + guidance * (eps - free)
            x, _ = scheduler.step(eps, int(t), x)
            report(
                progress, "generating images", b * len(scheduler.timesteps) + i + 1, batches * len(scheduler.timesteps)
            )
        out[b * batch_size : b * batch_size + len(y)] = x.clamp(-1, 1)
    return out
