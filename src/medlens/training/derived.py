"""Runs made from a trained run rather than from scratch (a distilled student, pruned networks): members fitted
with the shared Lightning loop (:func:`medlens.training.fitting.fit_member`), calibrated on validation by its task,
and written as an ordinary run folder with a bundle, so ``predict``, ``evaluate`` and ``export`` work on it::

    OUT/
      .medlens, run.yaml, plan.yaml   # run.yaml names the dataset and the run it was made from
      seed_0/                         # checkpoints, logs, curves, summary.json
      bundle/                         # the members' weights, the final plan, the operating point, the model card
      train_summary.json
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medlens.core.outputs import write_json, write_text_atomic
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset
from medlens.training.card import card_facts
from medlens.training.members import Member
from medlens.training.overrides import save_plan
from medlens.training.plan import Plan

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

    from medlens.tasks.base import Task
    from medlens.training.budget import BudgetSchedule

log = logging.getLogger(__name__)


def fit_derived(
    task: Task,
    dataset: Dataset,
    plan: Plan,
    out: Path,
    members: list[Member],
    prepared: Any,
    *,
    fits: Sequence[tuple[Callable[[BudgetSchedule], Any], tuple[DataLoader[Any], DataLoader[Any]]]],
    build: Callable[[dict[str, Any]], nn.Module],
    made_from: dict[str, Any],
    card_lines: list[str],
    progress: ProgressFn | None = None,
    pruned: bool = False,
) -> dict[str, Any]:
    """Fit each member into ``out`` (a fresh folder), calibrate them together, and write the bundle and summaries.

    Args:
        task: the run's task.
        dataset: the dataset the member trains and validates on.
        plan: the member's plan.
        out: the run folder being written (already marked as medlens's).
        members: the members' cases.
        prepared: the task's :meth:`~medlens.tasks.base.Task.prepare` of the members' cases.
        fits: for each member, its Lightning module (for a budget schedule) and its training and validation batches.
        build: the network for a state dict of a member's weights (pruned networks are not the plan's shapes).
        made_from: how the run was made (``{"method": "distillation", "teacher": ..., ...}``): recorded in
            ``run.yaml``, the bundle's ``info`` and ``train_summary.json``.
        card_lines: lines for the model card, after the task's own.
        progress: reports training.
        pruned: the weights are of pruned networks; the bundle records it (``info.pruned``), and loading it fits
            each network's shapes to its weights.
    """
    from medlens.models.bundle import save_bundle
    from medlens.training.engine import run_records
    from medlens.training.fitting import best_weights, fit_member

    save_plan(plan, out / "plan.yaml")
    run_info = {"dataset": str(dataset.root.resolve()), "task": plan.task, "seeds": len(members), "folds": None,
                "overrides": [], "made_from": made_from}  # fmt: skip
    write_text_atomic(out / "run.yaml", yaml.safe_dump(run_info, sort_keys=False))
    fitted, states = [], []
    for member, (make_module, loaders) in zip(members, fits, strict=True):
        seeded = plan.with_seed(member.seed)
        fitted.append(fit_member(make_module, *loaders, seeded, out / member.name, name=member.name, progress=progress))
        states.append(best_weights(out / member.name))
    nets = [build(state).eval() for state in states]
    calibration = task.calibrate(plan, nets, members, prepared)
    summary, info = run_records(dataset, plan, members, fitted, calibration)
    summary["made_from"] = info["made_from"] = made_from
    if pruned:
        info["pruned"] = True
    lines = [*task.card_lines(calibration.plan, calibration), *card_lines]
    info["card"] = card_facts(dataset, calibration.plan, summary, lines, calibration.worst_cases)
    save_bundle(
        out / "bundle",
        calibration.plan,
        states,
        task=task,
        threshold=calibration.threshold,
        info=info,
        calibration=calibration.applied,
    )
    write_json(out / "train_summary.json", summary)
    return summary
