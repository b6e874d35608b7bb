"""Detection cases in memory: images shrunk once to the largest training scale, with their boxes.

The detector resizes every batch itself (torchvision's transform; random short side in training), so the
cache holds each image at the largest size training draws, never larger than the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medlens.core.errors import InputError
from medlens.data.boxes import read_boxes
from medlens.data.dataset import Case, Dataset
from medlens.plan.schema import Plan

log = logging.getLogger(__name__)


@dataclass
class BoxImage:
    """One cached case: ``image`` (C, h, w) in the source dtype, ``boxes`` (N, 4) at the cached scale."""

    case_id: str
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor  # 0..K-1
    scale: tuple[float, float]  # (rows, columns) cached / original


def image_tensor(array: np.ndarray, channels: int, source: str) -> torch.Tensor:
    """A (C, H, W) picture with ``channels`` channels: gray repeated, colour averaged, others rejected."""
    if array.ndim != 3:
        raise InputError(source, f"expected a 2D picture, got an array of shape {array.shape}")
    image = torch.from_numpy(np.ascontiguousarray(array))
    if image.dtype not in (torch.uint8, torch.float32):
        image = image.float()
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return image.expand(channels, -1, -1).clone()
    if channels == 1:
        return image.float().mean(dim=0, keepdim=True)
    raise InputError(source, f"{image.shape[0]} channels, the model takes {channels}")


def load_box_images(dataset: Dataset, cases: list[Case], plan: Plan) -> list[BoxImage]:
    """Read, shrink and hold every case of a split (images are read once per training run)."""
    from torchvision.transforms.v2 import functional as tvf

    from medlens.io import read_image

    detection = plan.detection
    short_max = (
        max(detection.train_short_sides) if detection and detection.train_short_sides else min(plan.data.input_size)
    )
    items = []
    for case in cases:
        path = dataset.image_paths(case)[0]
        if not path.is_file():
            raise InputError(path, f"image of case {case.case_id} missing")
        image = image_tensor(read_image(path).as_2d().array, plan.data.channels, str(path))
        boxes, labels, size = read_boxes(dataset, case)
        height, width = image.shape[1:]
        if (height, width) != size:
            raise InputError(path, f"image is {height}x{width}, its boxes file says {size[0]}x{size[1]}")
        factor = min(1.0, short_max / min(height, width))
        new = (max(1, round(height * factor)), max(1, round(width * factor)))
        if new != (height, width):
            image = tvf.resize(image, list(new), antialias=True)
        scale = (new[0] / height, new[1] / width)
        scaled = torch.from_numpy(boxes) * torch.tensor([scale[1], scale[0], scale[1], scale[0]])
        items.append(BoxImage(case.case_id, image, scaled, torch.from_numpy(labels), scale))
    log.info("%d images held in memory (%.0f MB)", len(items), sum(i.image.nbytes for i in items) / 1e6)
    return items


class BoxImageSet(TorchDataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Cached cases as (float image, target) pairs; targets hold ``boxes`` and ``labels`` 1..K (0: background)."""

    def __init__(self, items: list[BoxImage], plan: Plan, *, augment: bool) -> None:
        self.items = items
        self.plan = plan
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        image, boxes, labels = item.image, item.boxes, item.labels
        if self.augment:
            from medlens.transforms.box_augment import augment_boxes

            image, boxes, labels = augment_boxes(image, boxes, labels, self.plan)
        return image.float(), {"boxes": boxes.float().reshape(-1, 4), "labels": labels.long() + 1}


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Detection batches are lists: images differ in size and in their number of boxes."""
    return [b[0] for b in batch], [b[1] for b in batch]


def make_box_loader(
    items: list[BoxImage], plan: Plan, *, augment: bool, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        BoxImageSet(items, plan, augment=augment),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=plan.train.num_workers,
        generator=generator,
        drop_last=False,
    )
