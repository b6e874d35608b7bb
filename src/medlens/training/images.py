"""Load a split as the network sees it: in memory when the plan says so, else streamed from disk."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from torch.utils.data import Dataset as TorchDataset

from medlens.data.dataset import Case, Dataset
from medlens.plan.schema import DataPlan

log = logging.getLogger(__name__)


def targets_of(dataset: Dataset, cases: list[Case]) -> torch.Tensor:
    """Class indices (N,) for classification, 0/1 flags (N, L) as float for multi-label."""
    if dataset.spec.task == "multilabel":
        return torch.tensor([dataset.label_vector(c) for c in cases], dtype=torch.float32)
    return torch.tensor([dataset.class_index(c) for c in cases], dtype=torch.int64)


def read_case(dataset: Dataset, case: Case, data: DataPlan) -> np.ndarray:
    """One case's network input (channels stacked when a case has one file per channel)."""
    from medlens.io import read_image
    from medlens.transforms.preprocess import to_input

    paths = dataset.image_paths(case)
    arrays = [to_input(read_image(p), data, source=str(p)) for p in paths] if len(paths) == 1 else None
    if arrays is None:  # several files, one channel each
        single = data.model_copy(update={"channels": 1})
        arrays = [np.concatenate([to_input(read_image(p), single, source=str(p)) for p in paths])]
    return arrays[0]


def load_in_memory(dataset: Dataset, cases: list[Case], data: DataPlan, label: str = "") -> torch.Tensor:
    """Read, resize and stack every case: (N, C, *input_size) float32."""
    from rich.progress import Progress

    out = torch.empty((len(cases), data.channels, *data.input_size), dtype=torch.float32)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"loading {label or 'images'}", total=len(cases))
        for i, case in enumerate(cases):
            out[i] = torch.from_numpy(read_case(dataset, case, data))
            progress.advance(task)
    return out


class _InMemory(TorchDataset):  # type: ignore[type-arg]
    """Indexed by a whole list of indices at once, so a batch is one tensor gather, not B Python calls."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


class _Streamed(TorchDataset):  # type: ignore[type-arg]
    def __init__(self, dataset: Dataset, cases: list[Case], y: torch.Tensor, data: DataPlan) -> None:
        self.dataset, self.cases, self.y, self.data = dataset, cases, y, data

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(read_case(self.dataset, self.cases[index], self.data)), self.y[index]


def make_loader(
    dataset: Dataset,
    cases: list[Case],
    data: DataPlan,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    cached: tuple[torch.Tensor, torch.Tensor] | None = None,
    label: str = "",
) -> DataLoader[Any]:
    """A loader of (images, targets) batches; ``cached`` reuses tensors already in memory."""
    y = targets_of(dataset, cases)
    generator = torch.Generator().manual_seed(seed)
    if data.cache == "memory":
        x = cached[0] if cached is not None else load_in_memory(dataset, cases, data, label)
        sampler = (
            RandomSampler(range(len(cases)), generator=generator) if shuffle else SequentialSampler(range(len(cases)))
        )
        drop_last = shuffle and len(cases) > batch_size
        return DataLoader(
            _InMemory(x, y), sampler=BatchSampler(sampler, batch_size, drop_last=drop_last), batch_size=None
        )
    return DataLoader(
        _Streamed(dataset, cases, y, data),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=shuffle and len(cases) > batch_size,
        persistent_workers=num_workers > 0,
    )
