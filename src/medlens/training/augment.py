"""Random augmentation of whole images, applied to a batch at once, 2D and 3D alike (classification, regression).

Hand-written on purpose: MONAI's and TorchIO's transforms work one sample at a time in data-loader
workers, and on a small CPU machine those workers compete with the network for the same cores, so the
data pipeline becomes the bottleneck. Here one ``affine_grid``/``grid_sample`` call warps the batch with a
different random affine (rotation, scale, translation, mirroring) per sample, inside the training step,
on whatever device the model is on.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from medlens.training.plan import AugmentPlan


def _rotation_2d(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (B, 2, 2)


def _rotation_3d(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from three angles per sample: (B, 3) -> (B, 3, 3)."""
    one, zero = torch.ones_like(angles[:, 0]), torch.zeros_like(angles[:, 0])
    mats = []
    for axis in range(3):
        c, s = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        if axis == 0:
            rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
        elif axis == 1:
            rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
        else:
            rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
        mats.append(torch.stack([torch.stack(r, -1) for r in rows], -2))
    return mats[0] @ mats[1] @ mats[2]


class Uniform:
    """Uniform draws in [0, 1) from one generator, moved to the batch's device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def __call__(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator).to(self.device)


def augment_batch(x: torch.Tensor, plan: AugmentPlan, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a normalised batch ``x`` of shape (B, C, *spatial) with per-sample random parameters."""
    b, dims = x.shape[0], x.ndim - 2
    dev = x.device

    rand = Uniform(generator, dev)

    spatial = plan.rotate_degrees > 0 or plan.scale != [1.0, 1.0] or plan.translate > 0 or plan.flip_axes
    if spatial:
        rad = math.radians(plan.rotate_degrees)
        rot = _rotation_2d((rand(b) * 2 - 1) * rad) if dims == 2 else _rotation_3d((rand(b, 3) * 2 - 1) * rad)
        # rotate in pixels, not in affine_grid's [-1, 1] coordinates, so a non-square image is not sheared:
        # D^-1 R D with D = diag(size / 2) in affine_grid's (x, y, z) = (last, ..., first) axis order
        size = torch.tensor(x.shape[2:][::-1], dtype=rot.dtype, device=dev)
        rot = rot * size[None, None, :] / size[None, :, None]
        lo, hi = plan.scale
        scale = lo + rand(b, 1) * (hi - lo)
        matrix = rot / scale[:, :, None]  # zoom in for scale > 1
        flips = torch.ones(b, dims, device=dev)
        for axis in plan.flip_axes:  # plan axes index the spatial axes; affine_grid's columns are reversed (x=last)
            flips[:, dims - 1 - axis] = torch.where(rand(b) < 0.5, -1.0, 1.0)
        matrix = matrix * flips[:, None, :]
        shift = (rand(b, dims) * 2 - 1) * plan.translate * 2
        apply = (rand(b) < plan.spatial_probability).float()
        eye = torch.eye(dims, device=dev).expand(b, dims, dims)
        matrix = apply[:, None, None] * matrix + (1 - apply[:, None, None]) * eye
        shift = apply[:, None] * shift
        theta = torch.cat([matrix, shift[:, :, None]], dim=2)  # (B, dims, dims+1)
        warped = apply.nonzero().squeeze(1)  # only the samples drawn for the spatial transform are resampled
        if len(warped):
            grid = F.affine_grid(theta[warped].to(x.dtype), [len(warped), *x.shape[1:]], align_corners=False)
            moved = F.grid_sample(x[warped], grid, mode="bilinear", padding_mode="border", align_corners=False)
            x = x.index_copy(0, warped, moved)
    return intensity_batch(x, plan, rand)


def intensity_batch(x: torch.Tensor, plan: AugmentPlan, rand: Any) -> torch.Tensor:
    """Brightness, contrast, gamma and noise as :class:`~medlens.training.plan.AugmentPlan` defines them, per
    sample: a shift of ``[-b, b]`` standard deviations, a scaling about the sample's mean by ``[1 - c, 1 + c]``,
    a gamma in ``[1 - g, 1 + g]`` on the sample rescaled to [0, 1], and Gaussian noise of up to ``noise_std``
    standard deviations; each applied with ``intensity_probability``."""
    b = x.shape[0]
    view = (b,) + (1,) * (x.ndim - 1)
    if not (plan.contrast > 0 or plan.brightness > 0 or plan.gamma > 0 or plan.noise_std > 0):
        return x
    flat = x.reshape(b, -1)
    mean, std = flat.mean(1).view(view), flat.std(1).clamp_min(1e-6).view(view)

    def drawn() -> torch.Tensor:
        return (rand(b) < plan.intensity_probability).float().view(view)

    if plan.contrast > 0:
        gain = 1 + (rand(b) * 2 - 1).view(view) * plan.contrast * drawn()
        x = (x - mean) * gain + mean
    if plan.brightness > 0:
        x = x + (rand(b) * 2 - 1).view(view) * plan.brightness * std * drawn()
    if plan.gamma > 0:
        flat = x.reshape(b, -1)
        lo, hi = flat.min(1).values.view(view), flat.max(1).values.view(view)
        span = (hi - lo).clamp_min(1e-6)
        g = 1 + (rand(b) * 2 - 1).view(view) * plan.gamma * drawn()
        x = ((x - lo) / span).clamp(0, 1) ** g * span + lo
    if plan.noise_std > 0:
        noise = torch.randn(x.shape, generator=rand.generator).to(x.device)
        x = x + noise * plan.noise_std * std * rand(b).view(view) * drawn()
    return x
