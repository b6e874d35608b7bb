"""Training a denoiser on the clean images of a dataset with simulated noise (``medlens denoise train``).

The loop is a plain PyTorch loop, written here rather than through the shared Lightning engine: it has no epochs,
folds, checkpoints or metrics to track, only random patches with fresh noise at every step until the step count or
the wall-clock budget runs out, with a cosine learning rate that reaches its end at whichever comes first (as
:mod:`medlens.training.budget` does for the tasks).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn, report
from medlens.data.dataset import load_dataset
from medlens.denoising.intensities import ScaledImage, read_split
from medlens.denoising.model_folder import DenoiserInfo, TrainedDenoiser, load_denoiser, save_denoiser
from medlens.denoising.network import Denoiser
from medlens.denoising.noise import NoiseSpec, add_noise, parse_noise

log = logging.getLogger(__name__)

#: the largest training patch per axis (whole 28x28 pictures; 32^3 blocks of a volume)
MAX_PATCH = {2: 64, 3: 32}
BATCH = {2: 32, 3: 4}
#: the share of the run (steps or budget) over which the learning rate warms up
WARMUP = 0.03


def train_denoiser(
    dataset_dir: str | Path,
    out: str | Path,
    noise: str | NoiseSpec,
    *,
    model: str = "unet",
    budget_minutes: float = 20.0,
    max_steps: int | None = None,
    learning_rate: float = 2e-3,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainedDenoiser:
    """Train a denoiser on the ``train`` split of a dataset and write it to ``out``.

    Args:
        dataset_dir: a medlens dataset (any task; 2D or 3D), read through its manifest.
        out: the folder to create (``denoiser.json``, ``weights.pt``).
        noise: the simulated noise (``gaussian:0.05,poisson:50``; see :mod:`medlens.denoising.noise`).
        model: ``unet`` (MONAI BasicUNet, residual) or ``autoencoder`` (MONAI AutoEncoder, a true bottleneck).
        budget_minutes: wall-clock limit of the training loop.
        max_steps: stop after this many optimiser steps (None: the budget alone decides).
        learning_rate: the peak learning rate (AdamW, cosine to zero).
        seed: seeds patches, noise and weights.
        overwrite: replace an existing output folder that medlens made.
        progress: called with the steps done.

    Raises:
        InputError: the dataset has no training images, or an image cannot be read.

    Example:
        >>> from medlens.denoising.training import train_denoiser
        >>> ae = train_denoiser("datasets/pneumonia", "ae", "gaussian:0.1", budget_minutes=2)  # doctest: +SKIP
    """
    spec = parse_noise(noise) if isinstance(noise, str) else noise
    dataset = load_dataset(dataset_dir)
    dims = dataset.spec.spatial_dims
    with output_folder(out, kind="denoiser", overwrite=overwrite, inputs=[("dataset", Path(dataset_dir))]) as tmp:
        images = read_split(dataset, ["train"], progress)
        channels = images[0].array.shape[0]
        if any(i.array.shape[0] != channels for i in images):
            raise InputError(dataset.root, "training images have different numbers of channels")
        torch.manual_seed(seed)
        network = Denoiser(model, dims, channels)
        summary = _fit(network, images, spec, dims, budget_minutes, max_steps, learning_rate, seed, progress)
        val = read_split(dataset, ["val"], limit=64) if dataset.split("val") else []
        if val and all(i.array.shape[0] == channels for i in val):
            summary |= _validation_psnr(network, val, spec, seed)
        info = DenoiserInfo(model, dims, channels, str(spec), dataset.spec.name, summary)
        save_denoiser(tmp, info, network)
        log.info("denoiser trained: %s", summary)
    return load_denoiser(out)


def _patch_shape(images: list[ScaledImage], dims: int) -> tuple[int, ...]:
    smallest = np.min([i.array.shape[1:] for i in images], axis=0)
    return tuple(int(min(s, MAX_PATCH[dims])) for s in smallest)


def _batch(images: list[ScaledImage], patch: tuple[int, ...], size: int, rng: np.random.Generator) -> torch.Tensor:
    """``size`` random patches of random training images, stacked ``(B, C, *patch)``."""
    crops = []
    for index in rng.integers(0, len(images), size):
        array = images[index].array
        starts = [int(rng.integers(0, s - p + 1)) for s, p in zip(array.shape[1:], patch, strict=True)]
        window = tuple(slice(a, a + p) for a, p in zip(starts, patch, strict=True))
        crop = array[(slice(None), *window)]
        for axis in range(1, crop.ndim):  # random flips: the noise has no direction
            if rng.random() < 0.5:
                crop = np.flip(crop, axis)
        crops.append(np.ascontiguousarray(crop))
    return torch.as_tensor(np.stack(crops))


def _fit(
    network: Denoiser,
    images: list[ScaledImage],
    spec: NoiseSpec,
    dims: int,
    budget_minutes: float,
    max_steps: int | None,
    learning_rate: float,
    seed: int,
    progress: ProgressFn | None,
) -> dict[str, float | int | str]:
    rng = np.random.default_rng(seed)
    patch = _patch_shape(images, dims)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    budget = max(budget_minutes, 1e-3) * 60.0
    network.train()
    start, step, loss_sum, loss_count = time.monotonic(), 0, 0.0, 0
    while True:
        elapsed = time.monotonic() - start
        done = max(elapsed / budget, step / max_steps if max_steps else 0.0)
        if done >= 1.0:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate * min(1.0, max(done / WARMUP, 0.1)) * 0.5 * (1 + math.cos(math.pi * done))
        clean = _batch(images, patch, BATCH[dims], rng)
        noisy = add_noise(clean, spec)
        loss = torch.nn.functional.mse_loss(network(noisy), clean)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
        if step % 20 == 0:
            report(progress, "training", step, max_steps)
            log.debug("step %d: loss %.5f", step, loss_sum / loss_count)
            loss_sum, loss_count = 0.0, 0
    network.eval()
    return {
        "steps": step,
        "seconds": round(time.monotonic() - start, 1),
        "budget_minutes": budget_minutes,
        "max_steps": max_steps or 0,
        "patch": "x".join(map(str, patch)),
        "batch_size": BATCH[dims],
        "training_images": len(images),
        "seed": seed,
    }


def _validation_psnr(network: Denoiser, images: list[ScaledImage], spec: NoiseSpec, seed: int) -> dict[str, float]:
    """Mean PSNR on validation images: noisy input and denoised (noise seeded)."""
    from skimage.metrics import peak_signal_noise_ratio

    generator = torch.Generator().manual_seed(seed + 1)
    noisy_psnr, denoised_psnr = [], []
    with torch.no_grad():
        for image in images:
            clean = torch.as_tensor(image.array)
            noisy = add_noise(clean, spec, generator)
            denoised = network(noisy[None])[0]
            noisy_psnr.append(peak_signal_noise_ratio(image.array, noisy.numpy(), data_range=1.0))
            denoised_psnr.append(peak_signal_noise_ratio(image.array, denoised.numpy(), data_range=1.0))
    return {"val_psnr_noisy": float(np.mean(noisy_psnr)), "val_psnr_denoised": float(np.mean(denoised_psnr))}
