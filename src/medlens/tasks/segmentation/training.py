"""Train a segmentation plan: one model per seed on the fixed split, or one per fold (k-fold), into a bundle.

Run folder::

    RUN_DIR/
      seed_0/ or fold_0/       # checkpoints (best by val_dice, last), logs, curves.png, summary.json
      bundle/                  # the members, the plan (with the post-processing chosen on validation)
      train_summary.json

Evaluation and prediction live in :mod:`medlens.workflows.segmentation_predict`; they are re-exported here
because the task dispatch in ``train``/``evaluate``/``predict`` looks for them in this module.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data import Dataset as TorchDataset

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import Case, Dataset
from medlens.plan.schema import Plan
from medlens.workflows.segmentation_predict import evaluate_segmentation, predict_segmentation

__all__ = ["evaluate_segmentation", "predict_segmentation", "train_segmentation"]
log = logging.getLogger(__name__)


class _Patches(TorchDataset):  # type: ignore[type-arg]
    """Random training patches ``(image, label)``: a sampler draws case indices, MONAI crops and augments."""

    def __init__(self, cases: list[dict[str, np.ndarray]], transform: Any) -> None:
        self.cases, self.transform = cases, transform

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.cases[index]
        out = self.transform({"image": case["image"], "label": case["label"]})
        sample = out[0] if isinstance(out, list) else out  # RandCropByPosNegLabeld returns a list of crops
        return torch.as_tensor(np.asarray(sample["image"])), torch.as_tensor(np.asarray(sample["label"]))


class _Whole(TorchDataset):  # type: ignore[type-arg]
    def __init__(self, cases: list[dict[str, np.ndarray]]) -> None:
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.cases[index]
        return torch.from_numpy(case["image"]), torch.from_numpy(case["label"])


def load_preprocessed(dataset: Dataset, cases: list[Case], plan: Plan) -> list[dict[str, np.ndarray]]:
    """Read, check, resample and normalise cases: ``{"image": (C, ...) float32, "label": (1, ...) uint8}``."""
    from rich.progress import Progress

    from medlens.data.segmentation_cases import label_values_of, read_case
    from medlens.transforms.segmentation import preprocess_image, preprocess_label

    values = label_values_of(dataset.spec.source)
    out = []
    with Progress(transient=True) as progress:
        task = progress.add_task("preprocessing cases", total=len(cases))
        for case in cases:
            image, mask = read_case(
                dataset.image_paths(case),
                dataset.root / case.target,
                dataset.spec.spatial_dims,
                dataset.num_classes,
                case.case_id,
                values,
            )
            out.append({"image": preprocess_image(image, plan), "label": preprocess_label(mask, image, plan)})
            progress.advance(task)
    return out


def fold_assignment(cases: list[Case], folds: int, seed: int = 0) -> list[int]:
    """Fold index of each case, patients kept whole (scikit-learn's GroupKFold on a seeded patient order)."""
    from sklearn.model_selection import GroupKFold

    patients = sorted({c.patient_id for c in cases})
    if folds < 2 or folds > len(patients):
        raise ConfigError("--folds", f"needs 2..{len(patients)} folds for {len(patients)} patients, got {folds}")
    rank = {p: i for i, p in enumerate(np.random.default_rng(seed).permutation(patients))}
    groups = [rank[c.patient_id] for c in cases]
    assignment = [0] * len(cases)
    splitter = GroupKFold(n_splits=folds)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(cases)), groups=groups)):
        for i in held:
            assignment[int(i)] = fold
    return assignment


def train_segmentation(
    dataset: Dataset,
    plan: Plan,
    out: Path,
    *,
    seeds: int = 1,
    folds: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the members (seeds on the fixed split, or folds over train+val) and write ``out/bundle``.

    Example:
        >>> from medlens.workflows.train import train
        >>> train("datasets/hippocampus", "runs/hippo", budget_minutes=30, folds=5)  # doctest: +SKIP
    """
    from medlens.tasks.fitting import best_weights

    if plan.segmentation is None:
        raise ConfigError("segmentation", "the plan has no segmentation section (run 'medlens plan' again)")
    if folds:
        pool = dataset.split("train") + dataset.split("val")
        assignment = fold_assignment(pool, folds, plan.train.seed)
        members = [
            (
                f"fold_{k}",
                [c for c, f in zip(pool, assignment, strict=True) if f != k],
                [c for c, f in zip(pool, assignment, strict=True) if f == k],
                plan.train.seed + k,
            )
            for k in range(folds)
        ]
    else:
        members = [(f"seed_{s}", dataset.split("train"), dataset.split("val"), s) for s in range(seeds)]
    ids = {c.case_id for _, tr, va, _ in members for c in tr + va}
    needed = [c for c in dataset.cases if c.case_id in ids]
    data = dict(zip([c.case_id for c in needed], load_preprocessed(dataset, needed, plan), strict=True))
    summaries, states, val_sets = [], [], []
    for name, train_cases, val_cases, seed in members:
        if not val_cases:
            raise InputError(dataset.root, f"{name}: no validation cases")
        summary = _fit_member(
            plan,
            out / name,
            seed,
            [data[c.case_id] for c in train_cases],
            [data[c.case_id] for c in val_cases],
            progress,
        )
        summary["member"] = name
        summaries.append(summary)
        states.append(best_weights(out / name))
        val_sets.append([data[c.case_id] for c in val_cases])
    final = _choose_postprocessing(plan, states, val_sets)
    return _finish(dataset, final, out, summaries, states, folds)


def _fit_member(
    plan: Plan,
    member_dir: Path,
    seed: int,
    train_cases: list[dict[str, np.ndarray]],
    val_cases: list[dict[str, np.ndarray]],
    progress: bool,
) -> dict[str, Any]:
    from medlens.tasks.fitting import fit_seed
    from medlens.tasks.segmentation import SegmentationModule
    from medlens.transforms.segmentation import training_transforms

    seg = plan.segmentation
    if seg is None:  # checked by the caller; keeps the type checker informed
        raise ConfigError("segmentation", "missing")
    plan = plan.model_copy(update={"train": plan.train.model_copy(update={"seed": seed})})
    batch = plan.train.batch_size
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(
        range(len(train_cases)), replacement=True, num_samples=seg.iterations_per_epoch * batch, generator=generator
    )
    train_loader = DataLoader(
        _Patches(train_cases, training_transforms(plan, seed)),
        batch_size=batch,
        sampler=sampler,
        num_workers=plan.train.num_workers,
        drop_last=True,
        persistent_workers=plan.train.num_workers > 0,
    )
    val_loader = DataLoader(_Whole(val_cases[: seg.val_max_cases]), batch_size=1)
    summary = fit_seed(
        lambda budget: SegmentationModule(plan.model_dump(), budget=budget),
        train_loader,
        val_loader,
        plan,
        member_dir,
        seed,
        progress=progress,
    )
    summary.setdefault("best_val_dice", summary.get(f"best_{plan.train.monitor}"))
    return summary


def _choose_postprocessing(
    plan: Plan, states: list[dict[str, torch.Tensor]], val_sets: list[list[dict[str, np.ndarray]]]
) -> Plan:
    """Keep-largest-component per class, on only where it raised the class's mean validation Dice."""
    from medlens.tasks.segmentation import (
        build_network,
        dice_per_class,
        keep_largest_component,
        sliding_window_probabilities,
    )

    seg = plan.segmentation
    if seg is None or not seg.check_largest_component:
        return plan
    k = len(plan.class_names)
    bare = plan.model_copy(update={"model": plan.model.model_copy(update={"pretrained": None})})
    before, after = [], []
    for state, cases in zip(states, val_sets, strict=True):
        net = build_network(bare)
        net.load_state_dict(state)
        net.eval()
        for case in cases[: seg.val_max_cases]:
            pred = sliding_window_probabilities([net], torch.from_numpy(case["image"]), plan).argmax(0).numpy()
            truth = torch.from_numpy(case["label"][0])
            before.append(dice_per_class(torch.from_numpy(pred), truth, k))
            after.append(dice_per_class(torch.from_numpy(keep_largest_component(pred, range(1, k))), truth, k))
    gain = torch.nanmean(torch.stack(after), 0) - torch.nanmean(torch.stack(before), 0)  # (K-1,)
    chosen = [c + 1 for c, g in enumerate(gain.tolist()) if g > 0]
    log.info(
        "keep-largest-component validation Dice change per class %s: on for %s", np.round(gain.tolist(), 4), chosen
    )
    new_seg = seg.model_copy(update={"keep_largest_component": chosen})
    note = (
        f"keep-largest-component on for classes {chosen} (validation Dice change {np.round(gain.tolist(), 4).tolist()})"
    )
    return plan.model_copy(update={"segmentation": new_seg, "notes": [*plan.notes, note]})


def _finish(
    dataset: Dataset,
    plan: Plan,
    out: Path,
    summaries: list[dict[str, Any]],
    states: list[dict[str, torch.Tensor]],
    folds: int | None,
) -> dict[str, Any]:
    from medlens.models.bundle import save_bundle

    dices = [s["best_val_dice"] for s in summaries if s.get("best_val_dice") is not None]
    summary: dict[str, Any] = {
        "dataset": str(dataset.root.resolve()),
        "members": "folds" if folds else "seeds",
        "seeds": summaries,
        "val_dice_mean": statistics.fmean(dices) if dices else None,
        "val_dice_sd": statistics.stdev(dices) if len(dices) > 1 else 0.0,
        "train_seconds_per_member": [s["train_seconds"] for s in summaries],
        "keep_largest_component": plan.segmentation.keep_largest_component if plan.segmentation else [],
    }
    info = {
        "dataset": dataset.spec.name,
        "modality": dataset.spec.modality,
        "channels": dataset.spec.channels,
        "n_train": len(dataset.split("train")),
        "n_val": len(dataset.split("val")),
        "folds": folds,
        "val_dice_per_member": dices,
    }
    card = _model_card(dataset, plan, summary)
    save_bundle(out / "bundle", plan, states, threshold=None, info=info, card=card)
    write_text_atomic(out / "train_summary.json", json.dumps(summary, indent=2))
    return summary


def _model_card(dataset: Dataset, plan: Plan, summary: dict[str, Any]) -> str:
    seg = plan.segmentation
    val = summary["val_dice_mean"]
    return "\n".join(
        [
            f"# Model card: {dataset.spec.name} segmentation",
            "",
            f"- Task: segmentation, {seg.configuration if seg else plan.spatial_dims}, classes: "
            f"{', '.join(plan.class_names)}",
            f"- Network: {plan.model.name}, patch {plan.data.input_size}, "
            f"spacing {seg.target_spacing if seg else '?'} mm, "
            f"{plan.data.channels} channel(s)",
            f"- Training data: {dataset.spec.name} ({dataset.spec.modality}), "
            f"{len(dataset.split('train'))} training and "
            f"{len(dataset.split('val'))} validation cases",
            f"- Ensemble of {len(summary['seeds'])} {summary['members']}; validation Dice "
            + (f"{val:.4f} ± {summary['val_dice_sd']:.4f}" if val is not None else "n/a"),
            f"- Post-processing (chosen on validation): keep largest component for classes "
            f"{summary['keep_largest_component'] or 'none'}",
            "",
            "## Intended use and limits",
            "",
            "Research use. Validated only on data like the training set above; test metrics with 95% confidence "
            "intervals are in the evaluation report (`medlens evaluate`). Not a medical device.",
            "",
        ]
    )
