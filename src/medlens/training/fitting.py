"""Fit one seed (or fold) of any task with Lightning: checkpoints, early stopping, budget, resume, logs.

Every task gives a LightningModule that logs ``plan.train.monitor`` during validation; this module does the
rest the same way for all of them, so checkpoints, resume and the time budget behave identically.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import InputError
from medlens.plan.schema import Plan
from medlens.tasks.budget import BudgetSchedule

log = logging.getLogger(__name__)


def fit_seed(
    make_module: Callable[[BudgetSchedule], Any],
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    plan: Plan,
    seed_dir: Path,
    seed: int,
    *,
    progress: bool = True,
    monitor_mode: str = "max",
) -> dict[str, Any]:
    """Train one model into ``seed_dir``; return its summary (also written to ``seed_dir/summary.json``).

    A finished seed (summary present) is not trained again; an interrupted one resumes from ``last.ckpt``.
    The best weights are in ``seed_dir/checkpoints/best.ckpt`` (see :func:`best_weights`).
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from medlens.tasks.throughput import Throughput

    quiet_lightning()
    summary_path = seed_dir / "summary.json"
    if summary_path.is_file():
        log.info("seed %d already finished; kept", seed)
        return dict(json.loads(summary_path.read_text()))
    t = plan.train
    ckpt_dir = seed_dir / "checkpoints"
    pl.seed_everything(seed, workers=True, verbose=False)
    steps = len(train_loader) * t.max_epochs
    budget = BudgetSchedule(steps, t.budget_minutes, plan.optim.warmup_fraction)
    module = make_module(budget)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=t.monitor, mode=monitor_mode, save_last=True)
    speed = Throughput()
    callbacks: list[Any] = [best, budget, speed]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=t.monitor, mode=monitor_mode, patience=t.early_stopping_patience))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False))
    trainer = pl.Trainer(
        max_epochs=t.max_epochs,
        accelerator="auto",
        devices=1,
        precision=precision(t.precision),  # type: ignore[arg-type]
        callbacks=callbacks,
        logger=CSVLogger(seed_dir, name="logs", version=""),
        check_val_every_n_epoch=t.val_every_epochs,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=progress,
        log_every_n_steps=max(1, min(50, len(train_loader))),
        deterministic=False,
    )
    last = ckpt_dir / "last.ckpt"
    start = time.monotonic()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None)
    if trainer.interrupted:
        raise KeyboardInterrupt
    if not best.best_model_path:
        raise InputError(seed_dir, "training produced no checkpoint (no validation ran)")
    summary = {
        "seed": seed,
        "monitor": t.monitor,
        f"best_{t.monitor}": float(best.best_model_score) if best.best_model_score is not None else None,
        "epochs": int(trainer.current_epoch),
        "steps": int(budget.step),
        "train_seconds": round(budget.state_dict()["elapsed"], 1),
        "train_images_per_second": round(speed.images_per_second or 0.0, 2),
        "batch_size": t.batch_size,
        "wall_seconds_this_session": round(time.monotonic() - start, 1),
        "stopped_by": "budget"
        if budget.progress >= 1 and budget.budget and budget.step < steps
        else "epochs or early stopping",
    }
    plot_curves(seed_dir)
    write_text_atomic(summary_path, json.dumps(summary, indent=2))
    log.info("seed %d: best %s %s after %s epochs", seed, t.monitor, summary[f"best_{t.monitor}"], summary["epochs"])
    return summary


def best_weights(seed_dir: Path, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The network weights (``prefix`` stripped) of a seed's best checkpoint."""
    ckpt = torch.load(seed_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


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


def plot_curves(seed_dir: Path) -> None:
    """Plot the per-epoch CSV log (losses and validation metrics) to ``curves.png``."""
    path = seed_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("epoch", "step") and value and (key.startswith("val_") or key.endswith("_loss")):
                series.setdefault(key, []).append((int(row["epoch"]), float(value)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, points in series.items():
        (a if key.endswith("loss") else b).plot(*zip(*points, strict=True), label=key)
    a.set_xlabel("epoch")
    b.set_xlabel("epoch")
    a.set_title("loss")
    b.set_title("validation")
    if series:
        a.legend()
        b.legend()
    fig.tight_layout()
    fig.savefig(seed_dir / "curves.png", dpi=90)
    plt.close(fig)
