"""A learning-rate schedule that anneals to a wall-clock budget, and stops training when it is spent.

Hand-written because PyTorch's and Lightning's schedulers count steps, and Lightning's ``max_time`` stops
training without annealing: with a time budget the number of steps is unknown in advance. Here progress is
``max(step / total_steps, elapsed / budget)``, so a cosine schedule reaches its end exactly when either the
epochs or the budget run out. Elapsed time is saved in checkpoints, so a resumed run keeps its budget.

In several processes (DDP) each batch's elapsed time is the largest over the processes (one small all-reduce), so
every process reads the same progress: the same learning rate, and the same batch to stop at.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import torch


class BudgetSchedule(pl.Callback):
    """Tracks training progress in [0, 1] for the schedule and stops when the budget is spent."""

    def __init__(self, total_steps: int, budget_minutes: float | None, warmup_fraction: float = 0.03) -> None:
        self.total_steps = max(1, total_steps)
        self.budget = budget_minutes * 60 if budget_minutes else None
        self.warmup = warmup_fraction
        self.elapsed = 0.0
        self._start: float | None = None
        self.step = 0
        self._shared: float | None = None  # with several processes: the elapsed time they agreed on

    @property
    def progress(self) -> float:
        now = self._shared if self._shared is not None else self._now()
        by_steps = self.step / self.total_steps
        by_time = now / self.budget if self.budget else 0.0
        return min(1.0, max(by_steps, by_time))

    def factor(self, schedule: str) -> float:
        """Learning-rate multiplier: linear warm-up, then cosine (or constant) to the end."""
        p = self.progress
        if self.warmup > 0 and p < self.warmup:
            return max(p / self.warmup, 1e-3)
        if schedule == "constant":
            return 1.0
        q = (p - self.warmup) / max(1e-8, 1 - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, q)))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._bank()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.step += 1
        if trainer.world_size > 1:
            now = torch.tensor([self._now()], dtype=torch.float64, device=pl_module.device)
            self._shared = float(trainer.strategy.reduce(now, reduce_op="max").item())
        if self.progress >= 1.0:
            trainer.should_stop = True

    def _bank(self) -> None:
        if self._start is not None:
            self.elapsed += time.monotonic() - self._start
            self._start = None

    def _now(self) -> float:
        return self.elapsed + (time.monotonic() - self._start if self._start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self._now(), "step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.elapsed = float(state_dict.get("elapsed", 0.0))
        self.step = int(state_dict.get("step", 0))
