"""Detection cases in memory: images shrunk once to the largest training scale, with their boxes.

The detector resizes every batch itself (torchvision's transform; random short side in training), so the
cache holds each image at the largest size training draws, never larger than the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medlens.core.errors import InputError
from medlens.core.image import require_finite
from medlens.core.progress import ProgressFn, tracked
from medlens.data.boxes import read_boxes
from medlens.data.dataset import Case, Dataset
from medlens.tasks.detection.config import DetectionPlan
from medlens.training.members import Member

log = logging.getLogger(__name__)


@dataclass
class BoxImage:
    """One cached case: ``image`` (C, h, w) in the source dtype, ``boxes`` (N, 4) at the cached scale."""

    case_id: str
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor  # 0..K-1
    scale: tuple[float, float]  # (rows, columns) cached / original


def load_box_images(
    dataset: Dataset, cases: list[Case], plan: DetectionPlan, progress: ProgressFn | None = None
) -> list[BoxImage]:
    """Read, shrink and hold every case (images are read once per training run)."""
    from torchvision.transforms.v2 import functional as tvf

    from medlens.io import read_image
    from medlens.tasks.detection.prediction import image_tensor

    detection = plan.detection
    short_max = max(detection.train_short_sides) if detection.train_short_sides else min(plan.data.input_size)
    items = []
    for case in tracked(cases, progress, "loading images"):
        path = dataset.image_paths(case)[0]
        if not path.is_file():
            raise InputError(path, f"image of case {case.case_id} missing")
        image = image_tensor(
            require_finite(read_image(path), str(path), "train on").as_2d().array, plan.data.channels, str(path)
        )
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

    def __init__(self, items: list[BoxImage], plan: DetectionPlan, *, augment: bool) -> None:
        self.items = items
        self.plan = plan
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[index]
        image, boxes, labels = item.image, item.boxes, item.labels
        if self.augment:
            from medlens.tasks.detection.augment import augment_boxes

            image, boxes, labels = augment_boxes(image, boxes, labels, self.plan)
        return image.float(), {"boxes": boxes.float().reshape(-1, 4), "labels": labels.long() + 1}


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Detection batches are lists: images differ in size and in their number of boxes."""
    return [b[0] for b in batch], [b[1] for b in batch]


def make_box_loader(
    items: list[BoxImage], plan: DetectionPlan, *, augment: bool, batch_size: int, shuffle: bool, seed: int = 0
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


class BoxCases:
    """Every case a run needs, in memory, looked up by case id."""

    def __init__(self, dataset: Dataset, plan: DetectionPlan, cases: list[Case], progress: ProgressFn | None) -> None:
        self.items = {item.case_id: item for item in load_box_images(dataset, cases, plan, progress)}

    def of(self, cases: list[Case]) -> list[BoxImage]:
        return [self.items[c.case_id] for c in cases]


def loaders(plan: DetectionPlan, prepared: BoxCases, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
    t = plan.train
    train = make_box_loader(
        prepared.of(member.train), plan, augment=True, batch_size=t.batch_size, shuffle=True, seed=t.seed
    )
    val = make_box_loader(prepared.of(member.val), plan, augment=False, batch_size=max(t.batch_size, 4), shuffle=False)
    return train, val
