"""Train a planned model (seeds, or folds) into a run folder that can be resumed: ``medlens.train(...)``.

Run folder::

    RUN_DIR/
      .medlens                 # marks the folder as made by medlens
      run.yaml                 # dataset (and its manifest's checksum), seeds or folds, overrides
      plan.yaml                # the plan as trained
      seed_0/ or fold_0/       # best.ckpt, last.ckpt, logs/ (per session; metrics.csv: all), curves.png, summary.json
      bundle/                  # what predict, evaluate, export and serve need (models/bundle.py)
      train_summary.json
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any, Literal

import yaml

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import MARKER, check_output_folder, write_marker, write_text_atomic
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset, load_dataset
from medlens.tasks.base import get_task, load_plan
from medlens.training.overrides import save_plan
from medlens.workflows.planning import resolve_plan

log = logging.getLogger(__name__)


def train(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    budget_minutes: float | None = None,
    seeds: int = 1,
    folds: int | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    devices: int = 1,
    nodes: int = 1,
    strategy: Literal["auto", "ddp"] = "auto",
) -> dict[str, Any]:
    """Train the dataset's plan into a run folder; return the training summary.

    Args:
        dataset_dir: a dataset folder (``medlens import``); its ``plan.yaml`` is used when present.
        out: the run folder to create (or to continue with ``resume``).
        budget_minutes: wall-clock training budget per member (overrides ``train.budget_minutes``).
        seeds: members trained on the fixed split with seeds 0, 1, ...; their ensemble is the model.
        folds: k-fold cross-validation over train+val instead (one member per fold).
        overrides: ``key=value`` plan overrides.
        resume: continue an interrupted run from its last checkpoints; finished members are kept. The run
            continues with its own dataset, plan, members and overrides.
        overwrite: replace an existing run folder (only one medlens made).
        progress: called as data is read and batches are trained.
        devices: processes per node (GPUs, or CPU processes); more than one (or ``nodes`` > 1) trains with DDP
            through Lightning (:mod:`medlens.training.distributed`). Without ``torchrun``/``srun`` Lightning starts
            the extra processes by running the same command again, so call this from a script or the CLI.
            ``train.batch_size`` stays the global batch. Only rank 0 writes; the others return ``{}``.
        nodes: machines, each running ``devices`` processes (under ``torchrun``/``srun``).
        strategy: ``ddp`` (the only multi-process strategy) or ``auto`` (ddp when there is more than one process).

    Example:
        >>> import medlens
        >>> medlens.train("datasets/pneumonia", "runs/pneumonia", budget_minutes=5, seeds=3)  # doctest: +SKIP
    """
    from medlens.training.distributed import Processes, is_rank_zero, rank_zero_first

    out = Path(out)
    processes = Processes(devices, nodes, strategy)
    dataset = load_dataset(dataset_dir)
    task = get_task(dataset.spec.task)
    if resume:
        plan, seeds, folds = _resumable(out, dataset, overrides, budget_minutes)
    else:
        if is_rank_zero():  # the other processes of a DDP run find the folder that rank 0 made
            check_output_folder(out, overwrite=overwrite, inputs=[("dataset", dataset.root)])
        extra = list(overrides or [])
        if budget_minutes is not None:
            extra.append(f"train.budget_minutes={budget_minutes}")
        plan = resolve_plan(dataset, extra)
        if plan.task != dataset.spec.task or plan.class_names != dataset.spec.classes:
            raise ConfigError(
                "plan",
                f"plan is for {plan.task} {plan.class_names}, dataset is {dataset.spec.task} {dataset.spec.classes}",
            )
    from medlens.training.distributed import check_batch
    from medlens.training.engine import train_members
    from medlens.training.members import plan_members

    check_batch(plan, processes)  # a batch that does not divide among the processes is refused before any work

    members = plan_members(dataset, seeds=seeds, folds=folds, seed=plan.train.seed)
    created = resume is False

    def make_folder() -> None:
        if out.exists() and any(out.iterdir()):  # checked above: marked, and the user asked to overwrite
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "run")
        save_plan(plan, out / "plan.yaml")
        run_info = {
            "dataset": str(dataset.root.resolve()),
            "manifest_sha1": _manifest_digest(dataset),
            "task": dataset.spec.task,
            "seeds": seeds,
            "folds": folds,
            "overrides": list(overrides or []),
        }
        write_text_atomic(out / "run.yaml", yaml.safe_dump(run_info, sort_keys=False))

    rank_zero_first(make_folder if not resume else lambda: None)
    try:
        return train_members(task, dataset, plan, out, members, progress=progress, processes=processes)
    except BaseException as exc:
        nothing = not any(out.glob("*/checkpoints/*.ckpt"))  # nothing worth resuming: leave nothing behind
        if created and is_rank_zero() and nothing:
            shutil.rmtree(out, ignore_errors=True)
            exc.after_interrupt = "no epoch had finished, so the run folder was removed; start again"  # type: ignore[attr-defined]
        raise


def _manifest_digest(dataset: Dataset) -> str:
    return hashlib.sha1((dataset.root / dataset.spec.manifest).read_bytes()).hexdigest()


def _resumable(
    out: Path, dataset: Dataset, overrides: list[str] | None, budget_minutes: float | None
) -> tuple[Any, int, int | None]:
    """The plan and members of the run in ``out``, after checking that it is being resumed on its own data."""
    if not (out / "plan.yaml").is_file() or not (out / "run.yaml").is_file():
        raise InputError(out, "nothing to resume (no plan.yaml and run.yaml in this run folder)")
    if not (out / MARKER).is_file():
        log.info("%s: a run folder from an earlier medlens (no marker); resuming it", out)
    if overrides or budget_minutes is not None:
        raise ConfigError("--set", "cannot change the plan of a run being resumed (its plan.yaml is kept)")
    try:
        recorded = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(out / "run.yaml", f"not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(recorded, dict) or "dataset" not in recorded:
        raise InputError(out / "run.yaml", "does not name the run's dataset")
    own = Path(str(recorded["dataset"])).resolve()
    if own != dataset.root.resolve():
        raise InputError(
            dataset.root, f"is not this run's dataset ({own}); a run resumes only on the data it started with"
        )
    digest = recorded.get("manifest_sha1")
    if digest and digest != _manifest_digest(dataset):
        raise InputError(
            dataset.root / dataset.spec.manifest, "changed since this run started; a run resumes only on the same cases"
        )
    plan = load_plan(out / "plan.yaml")
    seeds = int(recorded.get("seeds") or 1)
    folds = recorded.get("folds")
    return plan, seeds, int(folds) if folds else None
