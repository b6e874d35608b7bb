"""Planning rules for sequences of visits: the features' encoding fitted on the training visits (the fingerprint's
``sequence`` part), a small transformer sized to a small table, and the best checkpoint by validation AUC."""

from __future__ import annotations

from typing import Any

from medlens.tasks.sequence.config import Feature, ImageColumn, SequenceOptions, SequencePlan
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan


def plan_sequence(fingerprint: dict[str, Any], *, has_gpu: bool = False) -> SequencePlan:
    """Derive a sequence plan from a fingerprint holding a ``sequence`` part (see the task's ``fingerprint``)."""
    seq = fingerprint["sequence"]
    features = [Feature.model_validate(f) for f in seq["features"]]
    max_visits = int(min(max(int(seq["max_visits"]), 1), 32))
    n_train = int(seq["n_train_subjects"])
    images = [ImageColumn.model_validate(i) for i in seq.get("images", [])]
    embedded = sum(i.dim for i in images)
    notes = [
        f"{len(features) - embedded} tabular feature column(s)"
        + (f" and {embedded} image embedding feature(s)" if embedded else "")
        + f" (excluded: {', '.join(seq['excluded']) or 'none'}); numbers standardised "
        "by the training visits' mean and SD, text one-hot over the training levels, a 0/1 missingness column where "
        "the training visits miss values (a missing number is imputed with the mean)",
        f"up to {max_visits} visits per subject (the most a training subject has; the last ones are kept beyond)",
        "network: a 2-layer transformer encoder over visits (width 32, 4 heads, learned visit-position embedding, "
        "padding masked) and attention pooling over the subject's real visits; small because the table is small",
    ]
    notes += [
        f"image column {i.column!r}: each visit's image embedded at import by a frozen encoder into {i.dim} number "
        f"features ({i.description}), standardised like the other numbers and read by the baselines too"
        for i in images
    ]
    batch = 16 if n_train < 400 else 64
    notes.append(f"batch {batch} for {n_train} training subjects; AdamW lr 1e-3, weight decay 1e-2, up to 100 epochs")
    notes.append("best checkpoint: highest validation AUC (val_auc); early stopping after 25 epochs without gain")
    return SequencePlan(
        task="sequence",
        spatial_dims=2,
        class_names=list(fingerprint["class_names"]),
        data=DataPlan(
            input_size=[max_visits, sum(f.width for f in features)], channels=1, normalization="none", cache="memory"
        ),
        augment=AugmentPlan(why="none: a visit's measurements are not an image to flip or zoom"),
        model=ModelPlan(name="visit_transformer", why="attention over a subject's visits"),
        optim=OptimPlan(name="adamw", lr=1e-3, weight_decay=1e-2, warmup_fraction=0.05),
        train=TrainPlan(
            batch_size=batch, max_epochs=100, early_stopping_patience=25, monitor="val_auc", monitor_mode="max"
        ),
        sequence=SequenceOptions(
            subject=seq["subject"],
            order=seq["order"],
            order_kind=seq.get("order_kind", "number"),
            target=seq["target"],
            features=features,
            images=images,
            max_visits=max_visits,
        ),
        notes=notes,
    )
