"""Training data of a segmentation run, and the post-processing chosen on validation.

Every case a member needs is read, checked (image and mask on one grid), normalised, reoriented and resampled
once (held in memory when ``data.cache`` is ``memory``, else prepared again each time it is drawn); members
draw random patches (MONAI crops with foreground oversampling, then augmentation) and are validated on whole
cases. After training, keep-largest-component is turned on for a class only where it raised that class's
mean validation Dice (each member on the cases it held out).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data import Dataset as TorchDataset

from medlens.core.image import require_finite
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset
from medlens.tasks.base import Calibration
from medlens.tasks.segmentation.config import SegmentationPlan
from medlens.training.members import Member

log = logging.getLogger(__name__)


class PreparedCases:
    """Cases on the network's grid: ``{"image": (C, ...) float32, "label": (1, ...) uint8}`` by case id."""

    def __init__(
        self, dataset: Dataset, plan: SegmentationPlan, cases: Sequence[Case], progress: ProgressFn | None
    ) -> None:
        self.dataset, self.plan = dataset, plan
        self.cases = {c.case_id: c for c in cases}
        self.memory: dict[str, dict[str, np.ndarray]] = {}
        if plan.data.cache == "memory":
            for case in tracked(list(cases), progress, "preparing cases"):
                self.memory[case.case_id] = self.read(case)

    def read(self, case: Case) -> dict[str, np.ndarray]:
        from medlens.data.segmentation_cases import label_values_of, read_case
        from medlens.tasks.segmentation.preprocessing import prepare_image, prepare_label

        d = self.dataset
        image, mask = read_case(
            d.image_paths(case), d.root / case.target, d.spec.spatial_dims, d.num_classes, case.case_id,
            label_values_of(d.spec.source),
        )  # fmt: skip
        require_finite(image, str(d.image_paths(case)[0]), "train on")
        return {"image": prepare_image(image, self.plan).tensor.numpy(), "label": prepare_label(mask, self.plan)}

    def __getitem__(self, case_id: str) -> dict[str, np.ndarray]:
        return self.memory.get(case_id) or self.read(self.cases[case_id])


class _Patches(TorchDataset):  # type: ignore[type-arg]
    """Random training patches ``(image, label)``: a sampler draws case indices, MONAI crops and augments."""

    def __init__(self, prepared: PreparedCases, ids: list[str], transform: Any) -> None:
        self.prepared, self.ids, self.transform = prepared, ids, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.prepared[self.ids[index]]
        out = self.transform({"image": case["image"], "label": case["label"]})
        sample = out[0] if isinstance(out, list) else out  # RandCropByPosNegLabeld returns a list of crops
        return torch.as_tensor(np.asarray(sample["image"])), torch.as_tensor(np.asarray(sample["label"]))


class _Whole(TorchDataset):  # type: ignore[type-arg]
    def __init__(self, prepared: PreparedCases, ids: list[str]) -> None:
        self.prepared, self.ids = prepared, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.prepared[self.ids[index]]
        return torch.from_numpy(case["image"]), torch.from_numpy(case["label"])


def loaders(plan: SegmentationPlan, prepared: PreparedCases, member: Member) -> tuple[DataLoader[Any], DataLoader[Any]]:
    from medlens.tasks.segmentation.augment import training_transforms

    seg, t = plan.segmentation, plan.train
    generator = torch.Generator().manual_seed(t.seed)
    train_ids = [c.case_id for c in member.train]
    sampler = RandomSampler(
        range(len(train_ids)),
        replacement=True,
        num_samples=seg.iterations_per_epoch * t.batch_size,
        generator=generator,
    )
    train = DataLoader(
        _Patches(prepared, train_ids, training_transforms(plan, t.seed)),
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=t.num_workers,
        drop_last=True,
        persistent_workers=t.num_workers > 0,
    )
    val = DataLoader(_Whole(prepared, [c.case_id for c in member.val][: seg.val_max_cases]), batch_size=1)
    return train, val


def calibrate(
    plan: SegmentationPlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: PreparedCases
) -> Calibration:
    """Keep-largest-component per class, on only where it raised the class's mean validation Dice."""
    from medlens.tasks.segmentation.inference import keep_largest_component, sliding_window_probabilities
    from medlens.tasks.segmentation.metrics import dice_per_class

    seg = plan.segmentation
    k = len(plan.class_names)
    chosen: list[int] = list(seg.keep_largest_component)
    worst: list[dict[str, Any]] = []
    if seg.check_largest_component:
        before, after, ids = [], [], []
        for net, member in zip(nets, members, strict=True):
            for case in member.val[: seg.val_max_cases]:
                ids.append(case.case_id)
                data = prepared[case.case_id]
                pred = sliding_window_probabilities([net], torch.from_numpy(data["image"]), plan).argmax(0).numpy()
                truth = data["label"][0]
                before.append(dice_per_class(pred, truth, k))
                after.append(dice_per_class(keep_largest_component(pred, range(1, k)), truth, k))
        with np.errstate(invalid="ignore"):
            gain = np.nanmean(np.stack(after), 0) - np.nanmean(np.stack(before), 0)  # (K-1,)
        chosen = [c + 1 for c, g in enumerate(gain.tolist()) if g > 0]
        worst = _worst_validation_cases(ids, np.stack(before), np.stack(after), chosen)
        rounded = np.round(gain, 4).tolist()
        log.info("keep-largest-component validation Dice change per class %s: on for %s", rounded, chosen)
        note = f"keep-largest-component on for classes {chosen} (validation Dice change {rounded})"
        plan = plan.model_copy(
            update={
                "segmentation": seg.model_copy(update={"keep_largest_component": chosen}),
                "notes": [*plan.notes, note],
            }
        )
    return Calibration(
        plan,
        threshold=None,
        info={"keep_largest_component": chosen},
        summary={"keep_largest_component": chosen},
        worst_cases=worst,
    )


def _worst_validation_cases(
    ids: list[str], before: np.ndarray, after: np.ndarray, chosen: list[int]
) -> list[dict[str, Any]]:
    """Validation cases with the lowest mean foreground Dice after the chosen post-processing (members averaged).

    Args:
        ids: the case of each row (a case appears once per member that validated on it).
        before: Dice per row and foreground class (R, K-1) without keep-largest-component.
        after: the same with it.
        chosen: classes (1-based) where keep-largest-component is on.
    """
    from medlens.metrics.cases import worst_cases

    on = np.zeros(before.shape[1], dtype=bool)
    on[[c - 1 for c in chosen]] = True
    dice = np.where(on[None, :], after, before)  # (R, K-1) as predicted
    by_case: dict[str, list[float]] = {}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row where every class is absent from both: NaN
        for case_id, row in zip(ids, np.nanmean(dice, axis=1), strict=True):
            by_case.setdefault(case_id, []).append(float(row))
    names = list(by_case)
    return worst_cases(names, [float(np.nanmean(by_case[n])) for n in names], metric="mean foreground Dice")
