"""Box-aware augmentation for detection with torchvision.transforms.v2: flips, crops, colour, sanitising.

Scale jitter is not here: the detector draws a random short side per batch (``detection.train_short_sides``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from medlens.plan.schema import Plan


@lru_cache(maxsize=8)
def _pipeline(spec: str, channels: int, integer: bool) -> Any:
    import json

    from torchvision.transforms import v2

    p = json.loads(spec)
    steps: list[Any] = []
    if 1 in p["flip_axes"]:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if 0 in p["flip_axes"]:
        steps.append(v2.RandomVerticalFlip(0.5))
    if p["crop_probability"] > 0:
        steps.append(v2.RandomApply([v2.RandomIoUCrop()], p=p["crop_probability"]))
    if integer and (p["brightness"] or p["contrast"] or p["saturation"] or p["hue"]):
        colour = {"saturation": p["saturation"], "hue": p["hue"]} if channels == 3 else {}
        jitter = v2.ColorJitter(brightness=p["brightness"], contrast=p["contrast"], **colour)
        steps.append(v2.RandomApply([jitter], p=p["probability"]))
    steps.append(v2.SanitizeBoundingBoxes(min_size=2.0))
    return v2.Compose(steps)


def augment_boxes(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, plan: Plan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly transform one image (C, H, W) and its boxes (N, 4) x1 y1 x2 y2 together; labels follow boxes.

    Boxes cut by a crop are clipped to it, and boxes left smaller than 2 px are dropped with their labels.
    """
    import json

    from torchvision import tv_tensors

    detection = plan.detection
    a = plan.augment
    spec = json.dumps(
        {
            "flip_axes": a.flip_axes,
            "crop_probability": detection.crop_probability if detection and len(boxes) else 0.0,
            "brightness": a.brightness,
            "contrast": a.contrast,
            "saturation": detection.saturation if detection else 0.0,
            "hue": detection.hue if detection else 0.0,
            "probability": a.probability,
        },
        sort_keys=True,
    )
    integer = image.dtype == torch.uint8
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])),
        "labels": labels,
    }
    out_image, out = _pipeline(spec, int(image.shape[0]), integer)(tv_tensors.Image(image), target)
    out_image = out_image.as_subclass(torch.Tensor)
    if not integer and (a.brightness or a.contrast) and torch.rand(()) < a.probability:
        # ColorJitter assumes [0, 1] floats; images in raw units (CT, 16-bit) are jittered around their mean
        mean = out_image.mean()
        gain = 1 + (torch.rand(()) * 2 - 1) * a.contrast
        shift = (torch.rand(()) * 2 - 1) * a.brightness * out_image.std()
        out_image = (out_image - mean) * gain + mean + shift
    return out_image, out["boxes"].as_subclass(torch.Tensor), out["labels"]
