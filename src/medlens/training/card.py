"""The model card: one template for every task, with lines the task adds about itself."""

from __future__ import annotations

from typing import Any

from medlens.data.dataset import Dataset
from medlens.training.plan import Plan


def model_card(dataset: Dataset, plan: Plan, summary: dict[str, Any], task_lines: list[str]) -> str:
    """The Markdown model card of a trained run.

    Args:
        dataset: the training dataset.
        plan: the final plan (after the choices made on validation).
        summary: the run summary (members, monitor, its mean and spread).
        task_lines: the task's own bullet lines (network, operating point, post-processing).
    """
    mean, sd = summary.get("val_monitor_mean"), summary.get("val_monitor_sd") or 0.0
    monitor = summary.get("monitor", plan.train.monitor)
    members = summary.get("members", [])
    kind = summary.get("kind", "seeds")
    n_train, n_val = len(dataset.split("train")), len(dataset.split("val"))
    lines = [
        f"# Model card: {dataset.spec.name} {plan.task}",
        "",
        f"- Task: {plan.task}, {plan.spatial_dims}D, "
        + (f"classes: {', '.join(plan.class_names)}" if plan.class_names else "one continuous value"),
        f"- Network: {plan.model.name} {plan.model.kwargs or ''}, input {plan.data.input_size} x "
        f"{plan.data.channels} channel(s), "
        + (f"from {plan.model.pretrained}" if plan.model.pretrained else "trained from scratch"),
        f"- Training data: {dataset.spec.name} ({dataset.spec.modality}), {n_train} training and {n_val} validation"
        " cases",
        f"- Ensemble of {len(members)} {kind}; validation {monitor} "
        + (f"{mean:.4f} ± {sd:.4f}" if mean is not None else "n/a"),
        *[f"- {line}" for line in task_lines],
        "",
        "## Intended use and limits",
        "",
        "Research use. Validated only on data like the training set above; test metrics with 95% confidence",
        "intervals are in the evaluation report (`medlens evaluate`). Not a medical device.",
        "",
    ]
    return "\n".join(lines)
