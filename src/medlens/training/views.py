"""Two random views of each image for self-supervised pretraining, 2D and 3D alike, a whole batch at once.

The spatial and intensity changes are the task augmentation's (:func:`medlens.training.augment.augment_batch`:
one ``grid_sample`` per batch with per-sample parameters, for the CPU reasons given there), set stronger: a random
resized crop (zoom in by up to 1.6 and shift), mirroring along every axis, small rotations, intensity window
changes (brightness and contrast), gamma and Gaussian noise. Gaussian blur is MONAI's ``GaussianFilter``. There
is no colour jitter: medical images are grey or their colours carry meaning (stains, Doppler).
"""

from __future__ import annotations

import torch

from medlens.training.augment import augment_batch
from medlens.training.plan import AugmentPlan

BLUR_PROBABILITY = 0.3
BLUR_SIGMA = (0.3, 1.0)  # pixels


def view_plan(spatial_dims: int) -> AugmentPlan:
    """The augmentation that makes one view (recorded in ``pretrain.yaml``)."""
    return AugmentPlan(
        flip_axes=list(range(spatial_dims)),
        rotate_degrees=15.0,
        scale=[1.0, 1.6],  # zoom in: a crop of 1/1.6 to all of the image, resized to the input grid
        translate=0.15,
        brightness=0.2,
        contrast=0.3,
        gamma=0.3,
        noise_std=0.1,
        spatial_probability=1.0,
        intensity_probability=0.8,
        why="self-supervised views: random resized crop, flips, rotation, window, gamma, noise (blur separately)",
    )


def random_view(x: torch.Tensor, plan: AugmentPlan, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of a normalised batch (B, C, *spatial): :func:`augment_batch`, then Gaussian blur of a random
    ``BLUR_PROBABILITY`` of the samples with one sigma drawn from ``BLUR_SIGMA`` for the batch."""
    from monai.networks.layers import GaussianFilter

    out = augment_batch(x, plan, generator)
    chosen = (torch.rand(len(out), generator=generator) < BLUR_PROBABILITY).nonzero().squeeze(1).to(out.device)
    if len(chosen):
        low, high = BLUR_SIGMA
        sigma = low + float(torch.rand(1, generator=generator)) * (high - low)
        blur = GaussianFilter(spatial_dims=x.ndim - 2, sigma=sigma).to(out.device)
        out = out.index_copy(0, chosen, blur(out[chosen]))
    return out
