"""Measure a sequence model on subjects of a dataset against two plain baselines trained in the same run.

Every subject goes through the task's prediction (as ``medlens predict`` does). The baselines, logistic regression
and gradient boosting from scikit-learn, read each subject's *last visit* only, encoded exactly as the model's
visits are (the plan's features), and are trained on the dataset's training split (the model's training subjects
when it is the run's own dataset). All three AUCs get 95% percentile intervals from the same bootstrap resamples of
subjects (paired), and so do the model's differences from each baseline. The report shows the ROC curves and the
attention over visits per subject (a heat map: subjects by visits).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import ConfigError
from medlens.core.outputs import write_table
from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.data.dataset import Case, Dataset
from medlens.tasks.sequence.prediction import SequencePrediction, predict_tables
from medlens.tasks.sequence.table import dataset_visits, encode_subjects, last_visits

if TYPE_CHECKING:
    from medlens.metrics.subgroups import Subgroups
    from medlens.models.bundle import Bundle

BASELINES = ("logistic_regression", "gradient_boosting")


def baseline_scores(bundle: Bundle, dataset: Dataset, test: Sequence[Case], seed: int = 0) -> dict[str, np.ndarray]:
    """Each baseline's probability of the positive outcome for ``test``, trained on the dataset's train split."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    s = bundle.plan.sequence  # type: ignore[attr-defined]
    train = dataset.split("train")
    x_train, m_train, _ = encode_subjects(dataset_visits(dataset, train), s, [c.case_id for c in train])
    x_test, m_test, _ = encode_subjects(dataset_visits(dataset, test), s, [c.case_id for c in test])
    y_train = np.array([dataset.class_index(c) for c in train])
    models = {
        "logistic_regression": LogisticRegression(max_iter=2000),
        "gradient_boosting": GradientBoostingClassifier(random_state=seed),
    }
    return {
        name: model.fit(last_visits(x_train, m_train), y_train).predict_proba(last_visits(x_test, m_test))[:, 1]
        for name, model in models.items()
    }


def check_embeddings(bundle: Bundle, dataset: Dataset) -> None:
    """Refuse a dataset whose image columns were embedded by other weights than the model learned from.

    Raises:
        InputError: naming the dataset's ``dataset.yaml`` and the column.
    """
    import json

    from medlens.core.errors import InputError

    made = json.loads(dataset.spec.source.get("images", "{}"))
    for image in bundle.plan.sequence.images:  # type: ignore[attr-defined]
        digest = made.get(image.column, {}).get("digest")
        if digest != image.digest:
            how = "not embedded" if digest is None else f"embedded by other weights (SHA-256 {digest[:12]}...)"
            raise InputError(dataset.root / "dataset.yaml", f"image column {image.column!r} {how}; the model read "
                             f"embeddings of {image.encoder} (SHA-256 {image.digest[:12]}...): import with --images "
                             f"{image.column} --encoder {image.encoder}")  # fmt: skip


def auc_entries(
    scores: dict[str, np.ndarray], target: np.ndarray, n_bootstrap: int, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """``{"value", "ci95"}`` AUC of each score and of the differences ``<first> - <other>``, from one set of
    bootstrap resamples of subjects (paired)."""
    from medlens.metrics.bootstrap import interval_entry, resample_weights, weighted_roc_auc

    names = list(scores)
    ones = np.ones((1, len(target)))
    point = {n: float(weighted_roc_auc(scores[n], target, ones)[0]) for n in names}
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for weights in resample_weights(len(target), n_bootstrap, seed):
        for n in names:
            samples[n].append(weighted_roc_auc(scores[n], target, weights))
    stacked = {n: np.concatenate(v) if v else None for n, v in samples.items()}
    out = {n: interval_entry(point[n], stacked[n]) for n in names}
    first = names[0]
    for other in names[1:]:
        diff = None if stacked[first] is None else stacked[first] - stacked[other]  # type: ignore[operator]
        out[f"{first}_minus_{other}"] = interval_entry(point[first] - point[other], diff)
    return out


def evaluate(
    bundle: Bundle,
    dataset: Dataset,
    cases: Sequence[Case],
    folder: Path,
    *,
    n_bootstrap: int,
    title: str,
    progress: ProgressFn | None = None,
    subgroups: Subgroups | None = None,
) -> dict[str, Any]:
    from medlens.reports.html import Cell, Section, Table, metric_cell, write_report

    if subgroups is not None:
        raise ConfigError("--by", "the sequence task does not measure subgroups yet")
    check_embeddings(bundle, dataset)
    cases = list(cases)
    report_progress(progress, "predicting", 0, len(cases))
    predictions = [
        p for p in predict_tables(bundle, [dataset_visits(dataset, cases)]) if isinstance(p, SequencePrediction)
    ]
    report_progress(progress, "predicting", len(cases), len(cases))
    target = np.array([dataset.class_index(c) for c in cases])
    model = np.array([p.probability for p in predictions])
    baselines = baseline_scores(bundle, dataset, cases)
    entries = auc_entries({"model": model, **baselines}, target, n_bootstrap)
    threshold = 0.5 if bundle.threshold is None else bundle.threshold
    accuracy = float(np.mean((model >= threshold) == target))
    metrics: dict[str, Any] = {
        "task": "sequence",
        "n_cases": len(cases),
        "n_subjects": len(cases),
        "n_positive": int(target.sum()),
        "class_names": bundle.class_names,
        "auc": entries["model"],
        "accuracy": accuracy,
        "threshold": threshold,
        "baselines": {
            name: {
                "auc": entries[name]["value"],
                "ci95": entries[name]["ci95"],
                "model_minus_baseline": entries[f"model_minus_{name}"],
            }
            for name in BASELINES
        },
        "baselines_read": "each subject's last visit, encoded as the model's visits; trained on the train split "
        f"({len(dataset.split('train'))} subjects) with scikit-learn defaults (LogisticRegression max_iter 2000, "
        "GradientBoostingClassifier)",
        "bootstrap": {"unit": "subject", "n_units": len(cases), "n_resamples": n_bootstrap, "paired": True},
    }
    images = bundle.plan.sequence.images  # type: ignore[attr-defined]
    if images:  # the model and the baselines read each visit's image embedding with its measurements
        metrics["image_embeddings"] = [
            {"column": i.column, "dim": i.dim, "encoder": i.encoder, "digest": i.digest, "description": i.description}
            for i in images
        ]
    write_table(folder / "predictions.csv", [
        p.table_row() | {"truth": bundle.class_names[t], "logistic_regression": round(float(lr), 6),
                         "gradient_boosting": round(float(gb), 6)}
        for p, t, lr, gb in zip(predictions, target, baselines["logistic_regression"],
                                baselines["gradient_boosting"], strict=True)
    ])  # fmt: skip
    rows = [[Cell(name), metric_cell(entries[key])] for name, key in
            (("transformer over visits", "model"), ("logistic regression, last visit", "logistic_regression"),
             ("gradient boosting, last visit", "gradient_boosting"))]  # fmt: skip
    diffs = [[Cell(f"transformer - {n.replace('_', ' ')}"), metric_cell(entries[f"model_minus_{n}"])]
             for n in BASELINES]  # fmt: skip
    from medlens.tasks.sequence.report import attention_figure, roc_figure

    sections = [
        Section("AUC", "auc", text=[f"{len(cases)} subjects, {int(target.sum())} {bundle.class_names[1]}; 95% "
                f"intervals from {n_bootstrap} bootstrap resamples of subjects, the same for every model."],
                tables=[Table(["model", "AUC"], rows + diffs, text_columns=("model",))],
                figures=[roc_figure({"transformer": model, **baselines}, target)]),
        Section("Attention over visits", "attention", text=[
            "Each row a subject (sorted by the model's probability, highest on top), each column a visit in order: "
            "the weight of that visit in the subject's pooled representation (a row sums to 1; blank: no visit)."],
            figures=[attention_figure(predictions, target, bundle.class_names)]),
    ]  # fmt: skip
    shown = {k: "n/a" if entries[k]["value"] is None else f"{entries[k]['value']:.3f}" for k in ("model", *BASELINES)}
    summary = [
        f"Transformer AUC {shown['model']}; on the last visit, logistic regression {shown['logistic_regression']}, "
        f"gradient boosting {shown['gradient_boosting']}."
    ] + [
        f"Each visit's image of column {i.column!r} is read as {i.dim} embedding features ({i.description}), by "
        "the transformer and the baselines alike."
        for i in images
    ]
    write_report(folder, title, summary, sections)
    return metrics
