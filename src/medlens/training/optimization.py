"""The optimiser and learning-rate schedule every task uses, built from the plan's ``optim`` section."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medlens.training.budget import BudgetSchedule
from medlens.training.plan import OptimPlan


def configure_optimizer(net: nn.Module, plan: OptimPlan, budget: BudgetSchedule | None) -> Any:
    """AdamW or Nesterov SGD with weight decay on weights only (not on norms or biases), and, when a
    budget tracker is given, the warm-up + cosine schedule it drives, stepped every batch.

    Returns what a LightningModule's ``configure_optimizers`` returns.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": plan.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if plan.name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=plan.lr, momentum=plan.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=plan.lr)
    if budget is None:
        return optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: budget.factor(plan.schedule))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
