"""Train a planned model, one or several seeds, into a run folder that can be resumed.

Run folder::

    RUN_DIR/
      run.yaml                 # dataset, seeds, overrides
      plan.yaml                # the plan as trained
      seed_0/checkpoints/      # best.ckpt (by validation AUC) and last.ckpt (for --resume)
      seed_0/logs/metrics.csv  # per-epoch CSV log; seed_0/curves.png plots it
      seed_0/summary.json      # written when the seed has finished
      bundle/                  # what predict/evaluate/serve need (models/bundle.py)
      train_summary.json
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import Dataset, load_dataset
from medlens.plan.overrides import load_plan, save_plan
from medlens.plan.schema import Plan
from medlens.workflows.planning import resolve_plan

log = logging.getLogger(__name__)


def train(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    budget_minutes: float | None = None,
    seeds: int = 1,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    folds: int | None = None,
) -> dict[str, Any]:
    """Train ``seeds`` models with the dataset's plan; return the training summary.

    Args:
        dataset_dir: a dataset folder (``medlens import``); its ``plan.yaml`` is used when present.
        out: the run folder to create (or to continue with ``resume``).
        budget_minutes: wall-clock training budget per seed (overrides ``train.budget_minutes``).
        seeds: number of seeds (0, 1, ...); their models form an ensemble, their spread is reported.
        overrides: ``key=value`` plan overrides.
        resume: continue an interrupted run from its last checkpoints; finished seeds are kept.
        progress: show a progress bar.
        folds: k-fold cross-validation instead of the fixed validation split (tasks that support it).

    Example:
        >>> train("datasets/pneumonia", "runs/pneumonia", budget_minutes=5, seeds=3)  # doctest: +SKIP
    """
    out = Path(out)
    dataset = load_dataset(dataset_dir)
    if resume:
        if not (out / "plan.yaml").is_file():
            raise InputError(out, "nothing to resume (no plan.yaml in this run folder)")
        if overrides:
            raise ConfigError("--set", "cannot change the plan of a run being resumed")
        plan = load_plan(out / "plan.yaml")
        recorded = yaml.safe_load((out / "run.yaml").read_text())
        seeds = int(recorded.get("seeds", seeds))
        folds = recorded.get("folds", folds)  # a k-fold run resumes as k-fold without repeating --folds
    else:
        extra = list(overrides or [])
        if budget_minutes is not None:
            extra.append(f"train.budget_minutes={budget_minutes}")
        plan = resolve_plan(dataset, extra)
        if plan.task != dataset.spec.task or plan.class_names != dataset.spec.classes:
            raise ConfigError(
                "plan",
                f"plan is for {plan.task} {plan.class_names}, dataset is {dataset.spec.task} {dataset.spec.classes}",
            )
        if out.exists() and any(out.iterdir()):
            raise InputError(out, "run folder exists and is not empty (use --resume to continue it, or another --out)")
    if seeds < 1:
        raise ConfigError("--seeds", "must be at least 1")

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_plan(plan, out / "plan.yaml")
        run_info = {
            "dataset": str(dataset.root.resolve()),
            "seeds": seeds,
            "folds": folds,
            "overrides": list(overrides or []),
        }
        write_text_atomic(out / "run.yaml", yaml.safe_dump(run_info, sort_keys=False))
    try:
        return _train_task(dataset, plan, out, seeds, progress, folds)
    except BaseException:
        if created and not any(out.glob("*/checkpoints/*.ckpt")):  # seed_* or fold_* folders
            shutil.rmtree(out, ignore_errors=True)  # nothing worth resuming: leave nothing half-written
        raise


def _train_task(
    dataset: Dataset, plan: Plan, out: Path, seeds: int, progress: bool, folds: int | None
) -> dict[str, Any]:
    """Hand the run to the task's trainer; each writes seed (or fold) folders and ``out/bundle``."""
    if plan.task == "segmentation":
        from medlens.workflows.segmentation import train_segmentation

        return train_segmentation(dataset, plan, out, seeds=seeds, folds=folds, progress=progress)
    if plan.task == "detection":
        from medlens.workflows.detection import train_detection

        return train_detection(dataset, plan, out, seeds=seeds, progress=progress)
    if folds:
        raise ConfigError("--folds", f"k-fold training is not available for {plan.task} (use --seeds)")
    return _train_classification(dataset, plan, out, seeds, progress)


def _train_classification(dataset: Dataset, plan: Plan, out: Path, seeds: int, progress: bool) -> dict[str, Any]:
    from medlens.data.loading import load_in_memory

    train_cases, val_cases = dataset.split("train"), dataset.split("val")
    cached: dict[str, Any] = {}
    if plan.data.cache == "memory":
        cached["train"] = load_in_memory(dataset, train_cases, plan.data, "train")
        cached["val"] = load_in_memory(dataset, val_cases, plan.data, "val")
    summaries, states, val_probs = [], [], []
    for seed in range(seeds):
        summary, state, probs = _train_one(dataset, plan, out / f"seed_{seed}", seed, cached, progress)
        summaries.append(summary)
        states.append(state)
        val_probs.append(probs)
    return _finish(dataset, plan, out, summaries, states, np.stack(val_probs))


def _train_one(
    dataset: Dataset, plan: Plan, seed_dir: Path, seed: int, cached: dict[str, Any], progress: bool
) -> tuple[dict[str, Any], dict[str, torch.Tensor], np.ndarray]:
    from medlens.data.loading import make_loader
    from medlens.models.bundle import Bundle
    from medlens.tasks.classification import ClassificationModule, build_network
    from medlens.tasks.fitting import best_weights, fit_seed

    t = plan.train
    plan = plan.model_copy(update={"train": t.model_copy(update={"seed": seed})})
    loaders = {
        split: make_loader(
            dataset,
            dataset.split(split),
            plan.data,
            batch_size=t.batch_size if split == "train" else max(t.batch_size, 64),
            shuffle=split == "train",
            seed=seed,
            num_workers=t.num_workers,
            cached=(cached[split], None) if split in cached else None,  # type: ignore[arg-type]
            label=split,
        )
        for split in ("train", "val")
    }
    summary = fit_seed(
        lambda budget: ClassificationModule(plan.model_dump(), budget=budget),
        loaders["train"],
        loaders["val"],
        plan,
        seed_dir,
        seed,
        progress=progress,
    )
    summary.setdefault("best_val_auc", summary.get(f"best_{t.monitor}"))
    state = best_weights(seed_dir)
    net = build_network(plan.model_copy(update={"model": plan.model.model_copy(update={"pretrained": None})}))
    net.load_state_dict(state)
    probe = Bundle(seed_dir, plan, [], _nets=[net.eval()])
    x_val = cached.get("val")
    if x_val is None:
        x_val = torch.cat([b[0] for b in loaders["val"]])
    probs, _ = probe.predict_proba(x_val)
    return summary, state, probs


def _finish(
    dataset: Dataset,
    plan: Plan,
    out: Path,
    summaries: list[dict[str, Any]],
    states: list[dict[str, torch.Tensor]],
    val_probs: np.ndarray,
) -> dict[str, Any]:
    from medlens.data.loading import targets_of
    from medlens.models.bundle import save_bundle

    y_val = targets_of(dataset, dataset.split("val")).numpy()
    threshold, member_thresholds = None, None
    if plan.task == "classification" and len(plan.class_names) == 2:
        from medlens.evaluate.classification import choose_threshold

        threshold = float(choose_threshold(y_val, val_probs.mean(axis=0)[:, 1]))
        member_thresholds = [float(choose_threshold(y_val, p[:, 1])) for p in val_probs]
    aucs = [s["best_val_auc"] for s in summaries if s["best_val_auc"] is not None]
    summary: dict[str, Any] = {
        "dataset": str(dataset.root.resolve()),
        "seeds": summaries,
        "val_auc_mean": statistics.fmean(aucs) if aucs else None,
        "val_auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
        "train_seconds_per_seed": [s["train_seconds"] for s in summaries],
        "operating_threshold": threshold,
    }
    info = {
        "dataset": dataset.spec.name,
        "modality": dataset.spec.modality,
        "n_train": len(dataset.split("train")),
        "n_val": len(dataset.split("val")),
        "val_auc_per_member": aucs,
        "member_thresholds": member_thresholds,  # each seed's own operating point, for per-seed figures
    }
    card = _model_card(dataset, plan, summary)
    save_bundle(out / "bundle", plan, states, threshold=threshold, info=info, card=card)
    write_text_atomic(out / "train_summary.json", json.dumps(summary, indent=2))
    return summary


def _model_card(dataset: Dataset, plan: Plan, summary: dict[str, Any]) -> str:
    lines = [
        f"# Model card: {dataset.spec.name} {plan.task}",
        "",
        f"- Task: {plan.task}, {plan.spatial_dims}D, classes: {', '.join(plan.class_names)}",
        f"- Network: {plan.model.name} {plan.model.kwargs}, "
        f"input {plan.data.input_size} x {plan.data.channels} channel(s)",
        f"- Training data: {dataset.spec.name} ({dataset.spec.modality}), {len(dataset.split('train'))} training and "
        f"{len(dataset.split('val'))} validation cases",
        f"- Ensemble of {len(summary['seeds'])} seed(s); validation AUC "
        f"{summary['val_auc_mean']:.4f} ± {summary['val_auc_sd']:.4f}"
        if summary["val_auc_mean"] is not None
        else "",
        f"- Operating threshold (chosen on validation): {summary['operating_threshold']}",
        "",
        "## Intended use and limits",
        "",
        "Research use. Validated only on data like the training set above; test metrics with 95% confidence intervals",
        "are in the evaluation report (`medlens evaluate`). Not a medical device.",
        "",
    ]
    return "\n".join(lines)
