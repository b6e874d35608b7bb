"""Planning rules for regression: the whole-image rules (:mod:`medlens.training.image_planning`) without zoom
(the target may be a size), a robust loss, and the target standardised by its training statistics."""

from __future__ import annotations

from typing import Any

from medlens.tasks.regression.config import RegressionOptions, RegressionPlan
from medlens.training.image_planning import cost_counter, plan_image_model


def plan_regression(fingerprint: dict[str, Any], *, has_gpu: bool = False) -> RegressionPlan:
    """Derive a regression plan from a fingerprint with a ``target`` section (see :func:`target_statistics`)."""
    cost = None if has_gpu else cost_counter(fingerprint, outputs=1)
    sections = plan_image_model(
        fingerprint, has_gpu=has_gpu, cost=cost, monitor="val_mae", monitor_mode="min", zoom=False
    )
    stats = fingerprint["target"]
    name = str(fingerprint["class_names"][0])
    sections.notes.append(
        f"target {name}: mean {stats['mean']:.4g}, SD {stats['sd']:.4g} over {stats['n']} training cases; the network "
        "learns the standardised value; Huber loss (squared near the truth, absolute beyond 1 SD: robust to outliers)"
    )
    sections.notes.append("best checkpoint: lowest validation mean absolute error (val_mae)")
    return RegressionPlan(
        task="regression",
        spatial_dims=int(fingerprint["spatial_dims"]),  # type: ignore[arg-type]
        class_names=[name],
        data=sections.data,
        augment=sections.augment,
        model=sections.model,
        optim=sections.optim,
        train=sections.train,
        regression=RegressionOptions(
            target=name,
            unit=str(fingerprint.get("target_unit", "")),
            loss="huber",
            target_mean=round(float(stats["mean"]), 6),
            target_sd=round(max(float(stats["sd"]), 1e-6), 6),
        ),
        notes=sections.notes,
    )
