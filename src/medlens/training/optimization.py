"""The optimiser and learning-rate schedule every task uses, built from the plan's ``optim`` section."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medlens.training.budget import BudgetSchedule
from medlens.training.plan import OptimPlan


def configure_optimizer(net: nn.Module, plan: OptimPlan, budget: BudgetSchedule | None) -> Any:
    """AdamW or Nesterov SGD over the trainable parameters, with weight decay on weights only (not on norms or
    biases) and layer-wise learning rates when ``plan.layer_decay`` is set
    (:func:`medlens.training.finetuning.parameter_groups`), and, when a budget tracker is given, the warm-up +
    cosine schedule it drives, stepped every batch.

    Returns what a LightningModule's ``configure_optimizers`` returns.
    """
    from medlens.training.finetuning import parameter_groups

    groups = parameter_groups(net, plan)
    if plan.name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=plan.lr, momentum=plan.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=plan.lr)
    if budget is None:
        return optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: budget.factor(plan.schedule))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
