"""The denoising networks, from MONAI: a U-Net (``BasicUNet``, residual: it predicts the noise) or a convolutional
autoencoder (``AutoEncoder``, no skip connections, so everything passes its bottleneck).

Both halve the image size at each level, so inputs are padded (edge values repeated) to a multiple of
:data:`MULTIPLE` and the output is cropped back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medlens.core.errors import ConfigError

Model = Literal["unet", "autoencoder"]
MODELS: tuple[str, ...] = ("unet", "autoencoder")
MULTIPLE = 16

#: feature widths per spatial dimensionality: small, because training runs on a CPU within minutes
UNET_FEATURES = {2: (16, 16, 32, 64, 128, 16), 3: (8, 8, 16, 32, 64, 8)}
AUTOENCODER_CHANNELS = {2: (32, 64, 8), 3: (16, 32, 8)}


class Denoiser(nn.Module):
    """A network mapping noisy [0, 1] images ``(B, C, *spatial)`` to clean ones, any spatial size."""

    def __init__(self, model: str, spatial_dims: int, channels: int) -> None:
        super().__init__()
        from monai.networks.nets import AutoEncoder, BasicUNet

        if model not in MODELS:
            raise ConfigError("--model", f"unknown denoising model {model!r} (choose from {', '.join(MODELS)})")
        self.model = model
        self.spatial_dims = spatial_dims
        self.net: nn.Module
        if model == "unet":
            self.net = BasicUNet(spatial_dims, channels, channels, features=UNET_FEATURES[spatial_dims])
            final = self.net.final_conv  # type: ignore[union-attr]
            nn.init.zeros_(final.weight)  # the residual starts at zero: an untrained U-Net returns its input
            nn.init.zeros_(final.bias)
        else:
            self.net = AutoEncoder(
                spatial_dims, channels, channels, channels=AUTOENCODER_CHANNELS[spatial_dims], strides=(2, 2, 2)
            )

    @property
    def bottleneck(self) -> nn.Module:
        """The module whose output is the deepest representation (the U-Net's lowest level, the latent code)."""
        return self.net.down_4 if self.model == "unet" else self.net.intermediate  # type: ignore[return-value]

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        size = noisy.shape[2:]
        pads: list[int] = []
        for s in reversed(size):  # F.pad takes the last axis first
            pads += [0, (-s) % MULTIPLE]
        padded = F.pad(noisy, pads, mode="replicate") if any(pads) else noisy
        out = self.net(padded)
        if self.model == "unet":
            out = padded - out  # residual learning: the U-Net estimates the noise
        crop = (slice(None), slice(None), *(slice(0, s) for s in size))
        return out[crop]

    def bottleneck_size(self, shape: tuple[int, ...]) -> int:
        """How many numbers the bottleneck holds for one input of spatial ``shape`` (channels included)."""
        seen: list[int] = []
        handle = self.bottleneck.register_forward_hook(lambda _m, _i, out: seen.append(int(out[0].numel())))
        try:
            with torch.no_grad():
                self(torch.zeros((1, self.channels, *shape)))
        finally:
            handle.remove()
        return seen[0]

    @property
    def channels(self) -> int:
        first = next(p for p in self.net.parameters() if p.ndim > 1)
        return int(first.shape[1])
