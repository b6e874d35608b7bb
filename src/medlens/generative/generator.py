"""A trained generator, loaded from its folder, that makes images of the classes asked for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medlens.core.errors import ConfigError, InputError, one_line
from medlens.core.progress import ProgressFn
from medlens.generative.spec import WEIGHTS_FILE, GeneratorSpec, load_spec

if TYPE_CHECKING:
    from torch import nn


def build_network(spec: GeneratorSpec) -> nn.Module:
    """The network that makes images (the denoiser for diffusion, the generator for a GAN), untrained."""
    n_classes, channels = len(spec.classes), len(spec.channels)
    if spec.model == "diffusion":
        from medlens.generative.diffusion import build_unet

        return build_unet(spec.network, channels, n_classes)
    from medlens.generative.gan import build_generator

    return build_generator(spec.network, channels, n_classes, spec.size)


@dataclass
class Generator:
    """A generator folder's spec and network."""

    root: Path
    spec: GeneratorSpec
    net: nn.Module

    def class_index(self, name: str) -> int:
        """The index of class ``name``.

        Raises:
            ConfigError: naming the classes there are.
        """
        if name not in self.spec.classes:
            raise ConfigError(
                "--class", f"{name!r} is not one of the generator's classes ({', '.join(self.spec.classes)})"
            )
        return self.spec.classes.index(name)

    def generate(
        self,
        labels: Sequence[int],
        *,
        steps: int = 50,
        guidance: float = 1.0,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Images of the classes ``labels``: (N, C, H, W) float32 in [0, 1] (0 and 1 are ``spec.intensity``).

        Args:
            labels: class indices.
            steps: DDIM steps (diffusion only).
            guidance: classifier-free guidance scale (diffusion only; 1: none).
            seed: the random seed (the same seed and labels give the same images).
            progress: called as images are made.
        """
        import torch

        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.spec.classes)):
            raise ConfigError("labels", f"class indices must lie in 0..{len(self.spec.classes) - 1}")
        if self.spec.model == "diffusion":
            from medlens.generative import diffusion

            if steps < 1:
                raise ConfigError("--steps", "at least 1 sampling step")
            shape = (len(self.spec.channels), *self.spec.size)
            x = diffusion.sample(
                self.net, y, len(self.spec.classes), self.spec.network, shape,
                steps=steps, guidance=guidance, seed=seed, progress=progress,
            )  # fmt: skip
        else:
            from medlens.generative import gan

            x = gan.sample(self.net, y, self.spec.network["latent"], seed=seed, progress=progress)
        return ((x + 1) / 2).clamp(0, 1).numpy().astype(np.float32)

    def proportional_labels(self, n: int) -> list[int]:
        """``n`` class indices in the training data's class proportions (largest remainders), class by class."""
        counts = np.asarray(self.spec.class_counts, dtype=np.float64)
        share = counts / counts.sum() * n
        whole = np.floor(share).astype(int)
        for i in np.argsort(-(share - whole), kind="stable")[: n - int(whole.sum())]:
            whole[i] += 1
        return [c for c, k in enumerate(whole) for _ in range(int(k))]


def load_generator(folder: str | Path) -> Generator:
    """Load a generator folder (``medlens synth train``).

    Raises:
        InputError: not a generator folder, or weights that do not fit its spec.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(folder)
    spec = load_spec(root)
    net = build_network(spec)
    try:
        state = load_file(str(root / WEIGHTS_FILE))
        net.load_state_dict(state)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise InputError(
            root / WEIGHTS_FILE, f"weights do not fit the generator ({one_line(str(exc))[:300]})"
        ) from None
    return Generator(root=root, spec=spec, net=net.eval())
