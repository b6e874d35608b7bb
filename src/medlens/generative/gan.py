"""A conditional GAN: a small DCGAN generator against MONAI's ``PatchDiscriminator``.

The generator maps a latent vector and a class embedding to an image through two transposed convolutions
(so image sides must be multiples of 4); the discriminator sees the image with one plane per class (the true or
claimed class set to 1) stacked on its channels, and judges it patch by patch. Non-saturating GAN loss, Adam with
the DCGAN settings (lr 2e-4, beta1 0.5). A plain loop, as in :mod:`medlens.generative.diffusion`: two optimisers
stepped in turn until a budget runs out, nothing to validate on the way.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from medlens.core.progress import ProgressFn, report
from medlens.generative.diffusion import _done

DEFAULT_NETWORK: dict[str, Any] = {"latent": 64, "width": 64, "discriminator_width": 32}


class ConditionalGenerator(nn.Module):
    """DCGAN generator conditioned on a class: (latent, class) -> image in [-1, 1]."""

    def __init__(self, n_classes: int, out_channels: int, size: tuple[int, int], latent: int, width: int) -> None:
        super().__init__()
        self.latent = latent
        self.start = (size[0] // 4, size[1] // 4)
        self.width = width
        self.embed = nn.Embedding(n_classes, latent)
        self.project = nn.Sequential(
            nn.Linear(2 * latent, 2 * width * self.start[0] * self.start[1]),
            nn.BatchNorm1d(2 * width * self.start[0] * self.start[1]),
            nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(labels)], dim=1))  # (B, 2W*h*w)
        h = h.view(len(z), 2 * self.width, *self.start)  # (B, 2W, h, w)
        return self.up(h)  # (B, C, 4h, 4w)


def build_generator(network: dict[str, Any], channels: int, n_classes: int, size: tuple[int, int]) -> nn.Module:
    return ConditionalGenerator(n_classes, channels, size, network["latent"], network["width"])


def _with_class_planes(x: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    planes = nn.functional.one_hot(labels, n_classes).to(x.dtype)[:, :, None, None]  # (B, K, 1, 1)
    return torch.cat([x, planes.expand(-1, -1, *x.shape[2:])], dim=1)  # (B, C + K, H, W)


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    network: dict[str, Any],
    *,
    budget_seconds: float | None,
    max_steps: int | None,
    batch_size: int = 64,
    learning_rate: float = 2e-4,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train generator and discriminator on images ``x`` (N, C, H, W) in [-1, 1] with classes ``y`` (N,).

    Returns:
        The generator in eval mode, and what training did.
    """
    from monai.networks.nets import PatchDiscriminator

    torch.manual_seed(seed)
    size = (x.shape[2], x.shape[3])
    gen = build_generator(network, x.shape[1], n_classes, size)
    disc = PatchDiscriminator(
        spatial_dims=2,
        channels=network["discriminator_width"],
        in_channels=x.shape[1] + n_classes,
        out_channels=1,
        num_layers_d=2,
    )
    opt_g = torch.optim.Adam(gen.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    start, step, d_losses, g_losses = time.monotonic(), 0, [], []
    while not _done(step, max_steps, start, budget_seconds):
        index = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
        real, labels = x[index], y[index]
        z = torch.randn((len(real), network["latent"]), generator=generator)
        fake = gen(z, labels)
        real_logits = disc(_with_class_planes(real, labels, n_classes))[-1]
        fake_logits = disc(_with_class_planes(fake.detach(), labels, n_classes))[-1]
        d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        judged = disc(_with_class_planes(fake, labels, n_classes))[-1]
        g_loss = bce(judged, torch.ones_like(judged))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d_losses.append(float(d_loss.detach()))
        g_losses.append(float(g_loss.detach()))
        step += 1
        report(progress, "training the generator", step, max_steps)
    stats = {
        "steps": step,
        "images_seen": step * min(batch_size, len(x)),
        "seconds": round(time.monotonic() - start, 1),
        "last_loss": {
            "discriminator": round(sum(d_losses[-50:]) / max(1, len(d_losses[-50:])), 5),
            "generator": round(sum(g_losses[-50:]) / max(1, len(g_losses[-50:])), 5),
        },
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    return gen.eval(), stats


@torch.inference_mode()
def sample(
    net: nn.Module,
    labels: torch.Tensor,
    latent: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] of the classes ``labels`` (N,)."""
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size]
        chunks.append(net(torch.randn((len(y), latent), generator=generator), y))
        report(progress, "generating images", start + len(y), len(labels))
    return torch.cat(chunks) if chunks else torch.empty(0)
