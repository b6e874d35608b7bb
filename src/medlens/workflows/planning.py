"""Fingerprint a dataset and write its plan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError
from medlens.data.dataset import Dataset, load_dataset
from medlens.data.fingerprint import compute_fingerprint
from medlens.plan.overrides import apply_overrides, load_plan, save_plan
from medlens.plan.schema import Plan

log = logging.getLogger(__name__)


def check_trainable(dataset: Dataset) -> None:
    """Fail early, naming the problem, when a dataset cannot be trained on."""
    manifest = dataset.root / dataset.spec.manifest
    for split in ("train", "val"):
        if not dataset.split(split):
            raise InputError(manifest, f"no cases in the {split} split")
    if dataset.spec.task in ("classification", "multilabel"):
        from medlens.data.fingerprint import class_counts

        counts = class_counts(dataset, "train")
        missing = [n for n, c in zip(dataset.spec.classes, counts, strict=True) if c == 0]
        if missing:
            raise InputError(manifest, f"class(es) with no training case: {', '.join(missing)}")


def make_plan(dataset: Dataset, overrides: list[str] | None = None) -> Plan:
    """The plan for ``dataset``: rules applied to its fingerprint, then the overrides."""
    import torch

    check_trainable(dataset)
    fingerprint = compute_fingerprint(dataset)
    if dataset.spec.task in ("classification", "multilabel"):
        from medlens.plan.classification import plan_classification

        has_gpu = torch.cuda.is_available()
        cost = None if has_gpu else _cost_counter(fingerprint)
        plan = plan_classification(fingerprint, has_gpu=has_gpu, cost=cost)
    elif dataset.spec.task == "segmentation":
        from medlens.plan.segmentation import plan_segmentation

        plan = plan_segmentation(fingerprint, has_gpu=torch.cuda.is_available())
    elif dataset.spec.task == "detection":
        from medlens.plan.detection import plan_detection

        plan = plan_detection(fingerprint, has_gpu=torch.cuda.is_available())
    else:
        raise InputError(dataset.root, f"no planner for task {dataset.spec.task!r} yet")
    return apply_overrides(plan, overrides or [])


def _cost_counter(fingerprint: dict[str, Any]) -> Callable[..., float]:
    """Training GFLOPs per image of a candidate network, for the planner's CPU budget rule."""
    from medlens.models.cost import training_gflops

    def cost(name: str, kwargs: dict[str, Any], *, input_size: list[int]) -> float:
        return training_gflops(
            name,
            kwargs,
            spatial_dims=len(input_size),
            in_channels=int(fingerprint["channels"]),
            num_classes=max(2, len(fingerprint["class_names"])),
            input_size=input_size,
        )

    return cost


def plan_dataset(root: str | Path, overrides: list[str] | None = None) -> tuple[Plan, Path]:
    """Write ``DATASET/plan.yaml`` and return the plan and its path."""
    dataset = load_dataset(root)
    plan = make_plan(dataset, overrides)
    path = dataset.root / "plan.yaml"
    save_plan(plan, path)
    return plan, path


def resolve_plan(dataset: Dataset, overrides: list[str] | None = None) -> Plan:
    """The dataset's edited ``plan.yaml`` when there is one, else a fresh plan; overrides on top."""
    path = dataset.root / "plan.yaml"
    if path.is_file():
        check_trainable(dataset)
        return apply_overrides(load_plan(path), overrides or [])
    return make_plan(dataset, overrides)
