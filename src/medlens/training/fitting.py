"""Fit one member (a seed or a fold) of any task with Lightning: checkpoints, early stopping, budget, resume.

Every task gives a LightningModule that logs ``plan.train.monitor`` during validation; this module does the
rest the same way for all of them, so checkpoints, resume and the time budget behave identically.

Checkpoints hold only tensors and plain Python values, and every load here passes ``weights_only=True``: a
checkpoint from elsewhere (a received run folder) cannot run code when it is resumed or read.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import atomic_file, write_json
from medlens.core.progress import ProgressFn
from medlens.training.budget import BudgetSchedule
from medlens.training.distributed import Processes, RankZeroFigures, shard
from medlens.training.plan import Plan

log = logging.getLogger(__name__)


def fit_member(
    make_module: Callable[[BudgetSchedule], Any],
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    plan: Plan,
    seed_dir: Path,
    *,
    name: str = "",
    progress: ProgressFn | None = None,
    n_labels: int | None = None,
    share: int = 1,
    processes: Processes | None = None,
) -> dict[str, Any]:
    """Train one model into ``seed_dir``; return its summary (also written to ``seed_dir/summary.json``).

    A finished member (summary present) is not trained again; an interrupted one resumes from ``last.ckpt``.
    The best weights are in ``seed_dir/checkpoints/best.ckpt`` (see :func:`best_weights`).

    Args:
        make_module: builds the task's LightningModule given the budget schedule.
        train_loader: training batches.
        val_loader: validation batches.
        plan: the member's plan (its ``train.seed`` is the member's seed).
        seed_dir: the member's folder.
        name: the member's name (``seed_0``, ``fold_2``) for progress and logs.
        progress: called as batches are trained (stage ``training <name>``).
        n_labels: labelled training images, for ``train.finetune=auto`` (:mod:`medlens.training.finetuning`).
        share: with ``train.privacy``, how many members share the privacy budget (see
            :mod:`medlens.training.privacy`).
        processes: train in several processes (DDP, :mod:`medlens.training.distributed`): ``train_loader`` gives
            global batches, each process trains its share of them; only rank 0 writes the summary.
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from medlens.training.finetuning import apply_finetuning
    from medlens.training.observers import observed
    from medlens.training.throughput import Throughput

    quiet_lightning()
    name = name or seed_dir.name
    seed = plan.train.seed
    summary_path = seed_dir / "summary.json"
    if summary_path.is_file():
        log.info("%s already finished; kept", name)
        try:
            finished = json.loads(summary_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            finished = None
        if not isinstance(finished, dict):
            raise InputError(summary_path, "not a member summary (JSON mapping); remove it to train the member again")
        return finished
    t = plan.train
    monitor_mode = t.monitor_mode
    ckpt_dir = seed_dir / "checkpoints"
    pl.seed_everything(seed, workers=True, verbose=False)
    processes = processes or Processes()
    if processes.world > 1:  # each process trains its share of every global batch; all validate the whole set
        train_loader = shard(train_loader, processes)
    steps = len(train_loader) * t.max_epochs
    budget = BudgetSchedule(steps, t.budget_minutes, plan.optim.warmup_fraction)
    module = make_module(budget)
    tuning = apply_finetuning(module, plan, n_labels)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=t.monitor, mode=monitor_mode, save_last=True)
    speed = Throughput()
    callbacks: list[Any] = [best, budget, speed, *([tuning.callback] if tuning.callback else []), *observed()]
    if processes.world > 1:  # rank 0's validation figures decide for every process
        callbacks.insert(0, RankZeroFigures())
    private = None
    if t.privacy is not None:  # DP-SGD: Poisson batches, and the module's network and optimizer made private
        from medlens.training.privacy import PrivateFitting

        private = PrivateFitting(t.privacy, train_loader, epochs=t.max_epochs, share=share, seed=seed)
        train_loader = private.loader
        callbacks.append(private)
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=t.monitor, mode=monitor_mode, patience=t.early_stopping_patience))
    if progress is not None:
        callbacks.append(ProgressReporter(progress, f"training {name}", steps))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        accelerator="auto",
        **processes.trainer_args(),
        precision=precision(t.precision),  # type: ignore[arg-type]
        callbacks=callbacks,
        logger=CSVLogger(seed_dir, name="logs", version=f"session_{len(list(seed_dir.glob('logs/session_*')))}"),
        check_val_every_n_epoch=t.val_every_epochs,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=False,
        log_every_n_steps=max(1, min(50, len(train_loader))),
        deterministic=False,
    )
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        read_checkpoint(last)  # refused here, naming the file, when it is not a plain checkpoint of tensors
    start = time.monotonic()
    try:
        trainer.fit(
            module, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None, weights_only=True
        )
    except (RuntimeError, MisconfigurationException) as exc:  # Lightning's callbacks cannot find the monitor
        if f"{t.monitor}" not in str(exc) or t.monitor in ("val_loss", "train_loss"):
            raise
        raise ConfigError("train.monitor", f"{t.monitor!r} is not a figure this task logs ({exc})") from None
    if trainer.interrupted:
        raise KeyboardInterrupt
    if not trainer.is_global_zero:  # rank 0 writes the member's summary; the others only trained
        return {"member": name, "rank": trainer.global_rank}
    if not best.best_model_path:
        raise InputError(seed_dir, "training produced no checkpoint (no validation ran)")
    summary = {
        "member": name,
        "seed": seed,
        "monitor": t.monitor,
        f"best_{t.monitor}": float(best.best_model_score) if best.best_model_score is not None else None,
        "epochs": int(trainer.current_epoch),
        "steps": int(budget.step),
        "train_seconds": round(budget.state_dict()["elapsed"], 1),
        "train_images_per_second": round(speed.images_per_second or 0.0, 2),
        "batch_size": t.batch_size,
        **({"distributed": processes.facts(plan)} if processes.world > 1 else {}),
        "finetune": tuning.report(),
        "wall_seconds_this_session": round(time.monotonic() - start, 1),
        "stopped_by": "budget"
        if budget.progress >= 1 and budget.budget and budget.step < steps
        else "epochs or early stopping",
    }
    if private is not None:
        summary["privacy"] = private.facts()
    merge_logs(seed_dir)
    plot_curves(seed_dir)
    write_json(summary_path, summary)
    log.info("%s: best %s %s after %s epochs", name, t.monitor, summary[f"best_{t.monitor}"], summary["epochs"])
    return summary


def best_weights(seed_dir: Path, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The network weights (``prefix`` stripped) of a member's best checkpoint."""
    ckpt = read_checkpoint(seed_dir / "checkpoints" / "best.ckpt")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise InputError(seed_dir / "checkpoints" / "best.ckpt", "not a Lightning checkpoint (no state_dict)")
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded without unpickling code (``weights_only=True``).

    Raises:
        InputError: naming the file when it is missing, unreadable, or holds anything but tensors and plain
            Python values (such as a pickled object that would run code).
    """
    from medlens.models.checkpoints import load_plain

    if not path.is_file():
        raise InputError(path, "checkpoint missing")
    ckpt = load_plain(path)
    if not isinstance(ckpt, dict):
        raise InputError(path, "not a checkpoint (no mapping inside)")
    return ckpt


class ProgressReporter(pl.Callback):
    """A Lightning callback that reports training batches to a :data:`~medlens.core.progress.ProgressFn`."""

    def __init__(self, progress: ProgressFn, stage: str, total: int) -> None:
        self.progress, self.stage, self.total = progress, stage, total

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.progress(self.stage, int(trainer.global_step), self.total)

    def on_train_end(self, trainer: Any, *args: Any) -> None:
        self.progress(self.stage, self.total, self.total)


def precision(value: str) -> str:
    """Lightning precision: full precision on CPU, mixed (bf16 where supported) on GPU, unless set."""
    if value != "auto":
        return value if value != "32" else "32-true"
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def quiet_lightning() -> None:
    """Lightning logs device banners and tips at INFO through its own handlers; keep them out of the way."""
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # rank 0's figures are shared (RankZeroFigures)


def merge_logs(seed_dir: Path) -> Path | None:
    """Join the CSV logs of every training session of a member (a resumed run has several) into
    ``logs/metrics.csv``, in order, so the epochs trained before an interruption stay in the record."""
    sessions = sorted(seed_dir.glob("logs/session_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not sessions:
        return None
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for path in sessions:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns += [c for c in reader.fieldnames or [] if c not in columns]
            for row in reader:
                # a session stopped while Lightning's CSV logger rewrote its file for new columns leaves rows longer
                # than the header (csv puts the extra values under None): their columns are unknown, so drop them
                if None in row:
                    log.warning(
                        "%s: a row has more values than the header (an interrupted session); extra values dropped", path
                    )
                rows.append({**{k: v for k, v in row.items() if k is not None}, "session": path.parent.name})
    out = seed_dir / "logs" / "metrics.csv"
    with atomic_file(out, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*columns, "session"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def plot_curves(seed_dir: Path) -> None:
    """Plot the per-epoch log (losses and validation metrics) to ``curves.png``."""
    from medlens.reports.figures import figure

    path = seed_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("epoch", "step", "session") and value and (key.startswith("val_") or key.endswith("_loss")):
                series.setdefault(key, []).append((int(row["epoch"]), float(value)))
    fig = figure(10, 3.5)
    a, b = fig.subplots(1, 2)
    for key, points in series.items():
        (a if key.endswith("loss") else b).plot(*zip(*points, strict=True), label=key)
    a.set(xlabel="epoch", title="loss")
    b.set(xlabel="epoch", title="validation")
    if series:
        a.legend()
        b.legend()
    fig.tight_layout()
    with atomic_file(seed_dir / "curves.png", "wb") as handle:
        fig.savefig(handle, format="png", dpi=90)
