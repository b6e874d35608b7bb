"""Whole images as a network's input, for the tasks that take one image and give one answer per image
(classification, regression): channels, size and intensity as the plan says, the same at training,
evaluation and prediction, held in memory or read when drawn.

Volumes are first turned to the canonical orientation (RAS, MONAI's ``Orientation``), so a model trained on
one orientation sees the same anatomy layout in a case stored in another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from torch.utils.data import Dataset as TorchDataset

from medlens.core.errors import InputError
from medlens.core.image import Image, count_nonfinite
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset
from medlens.training.plan import DataPlan, Plan

if TYPE_CHECKING:
    from medlens.tasks.base import Graph

log = logging.getLogger(__name__)


def to_input(image: Image, data: DataPlan, *, source: str = "") -> np.ndarray:
    """Channel-first float32 array of ``data.channels`` x ``data.input_size``, not yet normalised.

    Gray inputs to a colour model are repeated; colour inputs to a gray model are averaged. Volumes are
    reoriented to RAS first. Resizing is MONAI's ``Resize`` (area-preserving anti-aliasing when shrinking); with
    ``data.fit = "pad"``, MONAI's ``ResizeWithPadOrCrop`` about the centre instead.
    """
    from monai.transforms import Resize

    dims = len(data.input_size)
    source = source or str(image.meta.get("source", "image"))
    if dims == 2:
        image = image.as_2d()
    if image.spatial_dims != dims:
        raise InputError(source, f"{image.spatial_dims}D image given to a {dims}D model")
    if dims == 3:
        image = image.reoriented()
    array = image.array.astype(np.float32, copy=False)
    if array.shape[0] != data.channels:
        if data.channels == 1:
            array = array.mean(axis=0, keepdims=True)
        elif array.shape[0] == 1:
            array = np.repeat(array, data.channels, axis=0)
        elif array.shape[0] == 4 and data.channels == 3:  # RGBA -> RGB
            array = array[:3]
        else:
            raise InputError(source, f"{array.shape[0]} channels, the model takes {data.channels}")
    if list(array.shape[1:]) != list(data.input_size):
        if data.fit == "pad":
            from monai.transforms import ResizeWithPadOrCrop

            # padded with the image's own minimum (its background), not zero, which may be a real intensity
            fitted = ResizeWithPadOrCrop(data.input_size, mode="constant", constant_values=float(array.min()))(
                torch.from_numpy(array)
            )
        else:
            mode = "bilinear" if dims == 2 else "trilinear"
            fitted = Resize(spatial_size=data.input_size, mode=mode, anti_aliasing=True)(torch.from_numpy(array))
        array = np.asarray(fitted.numpy() if hasattr(fitted, "numpy") else fitted, dtype=np.float32)
    return array


def from_input_grid(values: np.ndarray, image: Image, data: DataPlan) -> Image:
    """A map on the network's input grid (``data.input_size``) brought back to ``image``'s own grid: the inverse of
    :func:`to_input`'s geometry (resize, or centred pad-or-crop, then the reorientation of volumes undone), as an
    :class:`Image` of kind ``scalar`` with ``image``'s shape and affine.

    A one-slice volume given to a 2D model (a single DICOM slice) gets its map back as a one-slice volume.
    """
    from monai.transforms import Resize, ResizeWithPadOrCrop

    dims = len(data.input_size)
    work = image.as_2d() if dims == 2 else image
    grid = work.reoriented() if dims == 3 else work
    shape = grid.spatial_shape
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None]  # (1, *input_size)
    if data.fit == "pad":
        back = ResizeWithPadOrCrop(shape, mode="constant", constant_values=0.0)(tensor)
    else:
        back = Resize(spatial_size=shape, mode="bilinear" if dims == 2 else "trilinear", anti_aliasing=True)(tensor)
    array = np.asarray(back.numpy() if hasattr(back, "numpy") else back, dtype=np.float32)  # (1, *shape)
    if dims == 3 and grid is not work:  # undo the reorientation: the map in the input's own axis order
        array = Image(array, grid.affine).reoriented(work.orientation).array
    if work is not image:  # as_2d of a one-slice volume: (1, rows, columns) -> (1, columns, rows, 1)
        array = array.swapaxes(1, 2)[..., None]
    if array.shape[1:] != image.array.shape[1:]:
        raise ValueError(f"map of shape {array.shape[1:]} does not fit the image's {image.array.shape[1:]}")
    return Image(np.ascontiguousarray(array), image.affine.copy(), "scalar", {"source": image.meta.get("source")})


def normalize(batch: torch.Tensor, data: DataPlan) -> torch.Tensor:
    """Clip and normalise a batch (B, C, ...) with the dataset-level statistics in the plan."""
    if data.clip is not None:
        batch = batch.clamp(data.clip[0], data.clip[1])
    if data.normalization == "zscore":
        return (batch - data.mean) / max(data.std, 1e-8)
    if data.normalization == "minmax" and data.clip is not None:
        return (batch - data.clip[0]) / max(data.clip[1] - data.clip[0], 1e-8)
    return batch


def read_input(dataset: Dataset, case: Case, data: DataPlan) -> np.ndarray:
    """One case's network input (channels stacked when a case has one file per channel)."""
    from medlens.io import read_image

    def read(path: Any) -> Image:
        image = read_image(path)
        bad = count_nonfinite(image.array)
        if bad:
            raise InputError(path, f"case {case.case_id}: {bad} pixel(s) are NaN or infinite")
        return image

    paths = dataset.image_paths(case)
    if len(paths) == 1:
        return to_input(read(paths[0]), data, source=str(paths[0]))
    single = data.model_copy(update={"channels": 1})  # several files, one channel each
    return np.concatenate([to_input(read(p), single, source=str(p)) for p in paths])


def case_images(dataset: Dataset, cases: Sequence[Case], progress: ProgressFn | None = None) -> Iterator[Image]:
    """Each case's image (channels from several files stacked, one grid), read as it is needed, for
    ``bundle.predict_many``; the image's ``source`` is the case id."""
    from medlens.data.segmentation_cases import read_channels

    for case in tracked(cases, progress, "predicting"):
        image = read_channels(dataset.image_paths(case), dataset.spec.spatial_dims, case.case_id)
        image.meta["source"] = str(dataset.image_paths(case)[0])  # named in errors
        yield image


def load_in_memory(
    dataset: Dataset, cases: Sequence[Case], data: DataPlan, progress: ProgressFn | None = None, label: str = ""
) -> torch.Tensor:
    """Read, resize and stack every case: (N, C, *input_size) float32."""
    out = torch.empty((len(cases), data.channels, *data.input_size), dtype=torch.float32)
    for i, case in enumerate(tracked(cases, progress, f"loading {label or 'images'}")):
        out[i] = torch.from_numpy(read_input(dataset, case, data))
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
    def __init__(self, dataset: Dataset, cases: Sequence[Case], y: torch.Tensor, data: DataPlan) -> None:
        self.dataset, self.cases, self.y, self.data = dataset, list(cases), y, data

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(read_input(self.dataset, self.cases[index], self.data)), self.y[index]


class ImageCases:
    """The cases a run needs, with their targets, in memory when ``data.cache`` is ``memory``.

    Args:
        dataset: the dataset.
        cases: every case some member uses.
        targets: one target per case (class indices, label flags or values), first axis over cases.
        data: the plan's data section.
        progress: reports reading.
    """

    def __init__(
        self,
        dataset: Dataset,
        cases: Sequence[Case],
        targets: torch.Tensor,
        data: DataPlan,
        progress: ProgressFn | None = None,
    ) -> None:
        self.dataset, self.data = dataset, data
        self.cases = list(cases)
        self.index = {c.case_id: i for i, c in enumerate(self.cases)}
        self.targets = targets
        self.x = load_in_memory(dataset, self.cases, data, progress, "cases") if data.cache == "memory" else None

    def subset(self, cases: Sequence[Case]) -> tuple[torch.Tensor | None, torch.Tensor, list[Case]]:
        rows = [self.index[c.case_id] for c in cases]
        x = self.x[rows] if self.x is not None else None
        return x, self.targets[rows], list(cases)

    def inputs(self, cases: Sequence[Case]) -> torch.Tensor:
        """Prepared, not yet normalised inputs (N, C, *input_size) of ``cases``."""
        x, _, chosen = self.subset(cases)
        if x is not None:
            return x
        return torch.stack([torch.from_numpy(read_input(self.dataset, c, self.data)) for c in chosen])

    def loader(
        self, cases: Sequence[Case], *, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0
    ) -> DataLoader[Any]:
        """A loader of (inputs, targets) batches over ``cases``."""
        x, y, chosen = self.subset(cases)
        generator = torch.Generator().manual_seed(seed)
        drop_last = shuffle and len(chosen) > batch_size
        if x is not None:
            sampler = (
                RandomSampler(range(len(chosen)), generator=generator)
                if shuffle
                else SequentialSampler(range(len(chosen)))
            )
            return DataLoader(_InMemory(x, y), sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None)
        return DataLoader(
            _Streamed(self.dataset, chosen, y, self.data),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=num_workers,
            drop_last=drop_last,
            persistent_workers=num_workers > 0,
        )


def whole_image_graph(
    module: torch.nn.Module, plan: Plan, output: str, tolerance: float, **preprocessing: Any
) -> Graph:
    """The ONNX export of a whole-image task: images resized to ``input_size``, float32 in raw units -> ``output``
    per image, with the plan's clipping and normalisation inside ``module``; ``preprocessing`` adds the task's own
    facts (a threshold, a unit) to what a user must do before the graph."""
    from medlens.tasks.base import Graph

    data = plan.data
    shape = (2, data.channels, *data.input_size)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * data.std + data.mean  # raw units
    return Graph(
        module=module,
        example=example,
        input_name="image",
        output_names=[output],
        dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
        input_shape=["batch", data.channels, *data.input_size],
        input_meaning="images resized to input_size, float32, raw units (clipping and normalisation are in the graph)",
        preprocessing={
            "input_size": data.input_size,
            "channels": data.channels,
            "orientation": "RAS (volumes are reoriented before resizing)" if plan.spatial_dims == 3 else None,
            "clip": data.clip,
            "normalization": data.normalization,
            "mean": data.mean,
            "std": data.std,
            **preprocessing,
        },
        tolerance={output: tolerance},
    )
