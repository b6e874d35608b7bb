"""The trained denoiser on disk: a folder holding ``denoiser.json`` (what it is, how it was trained) and
``weights.pt`` (the network's state dict), and :class:`TrainedDenoiser`, which denoises arrays with it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.outputs import write_json
from medlens.denoising.network import Denoiser
from medlens.denoising.noise import NoiseSpec, parse_noise

CONFIG = "denoiser.json"
WEIGHTS = "weights.pt"


@dataclass
class DenoiserInfo:
    """What ``denoiser.json`` holds."""

    model: str
    spatial_dims: int
    channels: int
    noise: str
    dataset: str
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def noise_spec(self) -> NoiseSpec:
        return parse_noise(self.noise)


@dataclass
class TrainedDenoiser:
    """A loaded denoiser: its description and its network (in evaluation mode, on the CPU)."""

    folder: Path
    info: DenoiserInfo
    network: Denoiser

    def denoise(self, scaled: np.ndarray) -> np.ndarray:
        """Denoise one channel-first image scaled to [0, 1]; the same shape back, float32."""
        with torch.no_grad():
            out = self.network(torch.as_tensor(np.ascontiguousarray(scaled), dtype=torch.float32)[None])
        return out[0].numpy()

    def denoise_many(self, images: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
        """Denoise several images; those of one shape go through the network together."""
        out: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(tuple(image.shape), []).append(i)
        with torch.no_grad():
            for indices in by_shape.values():
                for start in range(0, len(indices), batch):
                    chosen = indices[start : start + batch]
                    stacked = torch.as_tensor(np.stack([images[i] for i in chosen]), dtype=torch.float32)
                    result = self.network(stacked).numpy()  # (B, C, *spatial)
                    for i, array in zip(chosen, result, strict=True):
                        out[i] = array
        return [a for a in out if a is not None]


def save_denoiser(folder: Path, info: DenoiserInfo, network: Denoiser) -> None:
    """Write the description and the weights into ``folder`` (a temporary output folder)."""
    torch.save(network.state_dict(), folder / WEIGHTS)
    write_json(folder / CONFIG, asdict(info))


def load_denoiser(folder: str | Path) -> TrainedDenoiser:
    """Read a folder written by ``medlens denoise train``.

    Raises:
        InputError: not such a folder, or its files cannot be read.
    """
    folder = Path(folder)
    config = folder / CONFIG
    if not config.is_file():
        raise InputError(folder, f"not a denoiser (no {CONFIG}); make one with 'medlens denoise train'")
    try:
        info = DenoiserInfo(**json.loads(config.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(config, f"not a valid denoiser description ({exc})") from None
    network = Denoiser(info.model, info.spatial_dims, info.channels)
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(folder / WEIGHTS, f"cannot load the weights ({str(exc).splitlines()[0]})") from None
    network.eval()
    return TrainedDenoiser(folder, info, network)
