"""Fingerprint a dataset and write its plan: ``medlens.plan(DATASET)``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError
from medlens.data.dataset import Dataset, load_dataset
from medlens.tasks.base import get_task, load_plan
from medlens.training.image_planning import BACKBONE_FAMILIES
from medlens.training.overrides import apply_overrides, save_plan
from medlens.training.plan import Plan

log = logging.getLogger(__name__)


def make_plan(dataset: Dataset, overrides: list[str] | None = None) -> Plan:
    """The plan for ``dataset``: its task's rules applied to its fingerprint, then the overrides."""
    import torch

    from medlens.data.fingerprint import compute_fingerprint

    task = get_task(dataset.spec.task)
    task.check_dataset(dataset)
    fingerprint = compute_fingerprint(dataset, task_part=task.fingerprint, max_images=task.fingerprint_images)
    plan = task.plan(fingerprint, has_gpu=torch.cuda.is_available())
    plan = apply_overrides(plan, overrides or [])
    if task.model_output == "image" and plan.model.name in BACKBONE_FAMILIES:  # "--set model.name=vit": size it
        plan = _sized_backbone(plan, fingerprint)
    return plan


def _sized_backbone(plan: Plan, fingerprint: dict[str, Any]) -> Plan:
    """The plan with its backbone family (``vit``, ``convnext``) replaced by the member that fits the images and
    the plan's time budget (:func:`medlens.training.image_planning.size_backbone`), its reason in the notes."""
    from medlens.training.image_planning import cost_counter, size_backbone

    outputs = max(2, len(plan.class_names))
    model = size_backbone(
        plan.model.name,
        list(plan.data.input_size),
        int(fingerprint["n_cases"]["train"]),
        plan.train.budget_minutes,
        cost_counter(fingerprint, outputs=outputs),
        dropout=plan.model.dropout,
    )
    model = model.model_copy(update={"init": plan.model.init, "pretrained": plan.model.pretrained})
    return plan.model_copy(update={"model": model, "notes": [*plan.notes, model.why]})


def plan(dataset_dir: str | Path, overrides: list[str] | None = None, *, overwrite: bool = False) -> tuple[Plan, Path]:
    """Write ``DATASET/plan.yaml`` (every training choice and why) and return the plan and its path.

    An existing ``plan.yaml`` (perhaps edited by hand) is kept unless ``overwrite``.

    Example:
        >>> import medlens
        >>> plan, path = medlens.plan("datasets/pneumonia", ["train.batch_size=32"])  # doctest: +SKIP
    """
    dataset = load_dataset(dataset_dir)
    path = dataset.root / "plan.yaml"
    if path.exists() and not overwrite:
        raise InputError(path, "exists (it may hold your edits); use --overwrite to plan again, or edit it")
    result = make_plan(dataset, overrides)
    save_plan(result, path)
    return result, path


def resolve_plan(dataset: Dataset, overrides: list[str] | None = None) -> Plan:
    """The dataset's (possibly edited) ``plan.yaml`` when there is one, else a fresh plan; overrides on top."""
    path = dataset.root / "plan.yaml"
    if path.is_file():
        get_task(dataset.spec.task).check_dataset(dataset)
        return apply_overrides(load_plan(path), overrides or [])
    return make_plan(dataset, overrides)
