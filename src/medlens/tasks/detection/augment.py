"""Box-aware augmentation for detection: flips and IoU-constrained crops with torchvision.transforms.v2 (boxes
follow, slivers are dropped), saturation and hue on colour pictures, then brightness, contrast, gamma and noise
with the meanings every task gives them (:func:`medlens.training.augment.intensity_batch`).

Scale jitter is not here: the detector draws a random short side per batch (``detection.train_short_sides``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch

from medlens.tasks.detection.config import DetectionPlan


@lru_cache(maxsize=8)
def _pipeline(spec: str) -> Any:
    from torchvision.transforms import v2

    p = json.loads(spec)
    steps: list[Any] = []
    if 1 in p["flip_axes"]:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if 0 in p["flip_axes"]:
        steps.append(v2.RandomVerticalFlip(0.5))
    if p["crop_probability"] > 0:
        steps.append(v2.RandomApply([v2.RandomIoUCrop()], p=p["crop_probability"]))
    if p["saturation"] or p["hue"]:  # colour pictures (uint8, 3 channels) only: ColorJitter's domain
        jitter = v2.ColorJitter(saturation=p["saturation"], hue=p["hue"])
        steps.append(v2.RandomApply([jitter], p=p["probability"]))
    steps.append(v2.SanitizeBoundingBoxes(min_size=2.0))
    return v2.Compose(steps)


def augment_boxes(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, plan: DetectionPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly transform one image (C, H, W) and its boxes (N, 4) x1 y1 x2 y2 together; labels follow boxes.

    Returns the image as float32 in its own units. Boxes cut by a crop are clipped to it, and boxes left
    smaller than 2 px are dropped with their labels.
    """
    from torchvision import tv_tensors

    from medlens.training.augment import Uniform, intensity_batch

    detection, a = plan.detection, plan.augment
    colour = image.dtype == torch.uint8 and image.shape[0] == 3
    spec = json.dumps(
        {
            "flip_axes": a.flip_axes,
            "crop_probability": detection.crop_probability if len(boxes) else 0.0,
            "saturation": detection.saturation if colour else 0.0,
            "hue": detection.hue if colour else 0.0,
            "probability": a.intensity_probability,
        },
        sort_keys=True,
    )
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])),
        "labels": labels,
    }
    out_image, out = _pipeline(spec)(tv_tensors.Image(image), target)
    pixels = out_image.as_subclass(torch.Tensor).float()
    pixels = intensity_batch(pixels[None], a, Uniform(None, pixels.device))[0]
    if image.dtype == torch.uint8:
        pixels = pixels.clamp(0, 255)  # stay a picture's range, as the detector's normalisation expects
    return pixels, out["boxes"].as_subclass(torch.Tensor), out["labels"]
