"""Evaluate a trained model on a split of its dataset (or another dataset): metrics.json + report.html."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medlens.core.atomic import atomic_dir
from medlens.core.errors import InputError
from medlens.data.dataset import load_dataset
from medlens.models.bundle import Bundle, load_bundle

log = logging.getLogger(__name__)


def metric_task(bundle: Bundle) -> str:
    """The metrics' name for the bundle's task: binary, multiclass or multilabel."""
    if bundle.plan.task == "multilabel":
        return "multilabel"
    return "binary" if len(bundle.class_names) == 2 else "multiclass"


def evaluate(
    run_dir: str | Path,
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    split: str = "test",
    n_bootstrap: int = 1000,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Measure the run's model (the ensemble of its seeds) on ``split``; write metrics.json and report.html.

    The headline figures use the operating threshold chosen on validation at training time; the figures at
    threshold 0.5 (the MedMNIST protocol) are reported beside them, labelled. Each seed is also measured
    alone, and the mean and standard deviation over seeds are given under ``seeds``.

    Example:
        >>> evaluate("runs/pneumonia", "runs/pneumonia/eval", split="test")  # doctest: +SKIP
    """
    from medlens.data.loading import load_in_memory, targets_of
    from medlens.evaluate.classification import classification_metrics
    from medlens.evaluate.report import write_classification_report

    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir)
    dataset_dir = Path(dataset) if dataset else _run_dataset(run_dir)
    if bundle.plan.task == "segmentation":
        from medlens.workflows.segmentation import evaluate_segmentation

        return evaluate_segmentation(bundle, dataset_dir, out, split=split, n_bootstrap=n_bootstrap)
    if bundle.plan.task == "detection":
        from medlens.workflows.detection import evaluate_detection

        return evaluate_detection(bundle, dataset_dir, out, split=split, n_bootstrap=n_bootstrap)
    data = load_dataset(dataset_dir)
    if data.spec.classes != bundle.class_names:
        raise InputError(dataset_dir, f"classes {data.spec.classes} differ from the model's {bundle.class_names}")
    cases = data.split(split)
    if not cases:
        raise InputError(dataset_dir, f"no cases in split {split!r}")
    x = load_in_memory(data, cases, bundle.plan.data, split)
    y = targets_of(data, cases).numpy()
    prob, per_member = bundle.predict_proba(x)
    task = metric_task(bundle)
    threshold = bundle.threshold if task == "binary" else None
    metrics = classification_metrics(
        y, prob, task=task, class_names=bundle.class_names, threshold=threshold, n_bootstrap=n_bootstrap
    )
    member_thresholds = bundle.info.get("member_thresholds") or [threshold] * len(per_member)
    metrics["seeds"] = _per_seed(y, per_member, task, bundle.class_names, member_thresholds)
    metrics["dataset"] = {"path": str(data.root.resolve()), "name": data.spec.name, "split": split}
    context = {
        "model": f"{bundle.plan.model.name} {bundle.plan.model.kwargs}",
        "members (seeds)": len(bundle.members),
        "dataset": f"{data.spec.name} ({split}, {len(cases)} cases)",
        "input": f"{bundle.plan.data.input_size} x {bundle.plan.data.channels}",
        "operating threshold": f"{threshold} (chosen on validation)" if threshold is not None else "arg-max / 0.5",
    }
    with atomic_dir(out, overwrite=overwrite) as tmp:
        clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
        (tmp / "metrics.json").write_text(json.dumps(clean, indent=2))
        write_classification_report(
            metrics,
            y,
            prob,
            tmp,
            title=f"{data.spec.name}: {split} set",
            task=task,
            class_names=bundle.class_names,
            context=context,
        )
        _write_predictions(tmp / "predictions.csv", cases, y, prob, bundle.class_names)
    return clean


def _run_dataset(run_dir: Path) -> Path:
    for candidate in (run_dir / "run.yaml", run_dir.parent / "run.yaml"):
        if candidate.is_file():
            return Path(yaml.safe_load(candidate.read_text())["dataset"])
    raise InputError(run_dir, "no run.yaml to find the dataset; pass --dataset")


def _per_seed(
    y: np.ndarray, per_member: np.ndarray, task: str, class_names: list[str], thresholds: list[float | None]
) -> dict[str, Any]:
    """Each seed's model alone, at its own operating threshold (chosen on validation) and at 0.5."""
    from medlens.evaluate.classification import classification_metrics

    rows = []
    for probs, threshold in zip(per_member, thresholds, strict=True):
        m = classification_metrics(y, probs, task=task, class_names=class_names, threshold=threshold, n_bootstrap=0)
        at_half = m.get("at_threshold_0.5", m)
        rows.append(
            {
                "auc": m["auc"]["value"],
                "accuracy": m["accuracy"]["value"],
                "accuracy_at_0.5": at_half["accuracy"]["value"],
            }
        )
    summary: dict[str, Any] = {"n": len(rows), "per_seed": rows}
    for key in ("auc", "accuracy", "accuracy_at_0.5"):
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            summary[key] = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return summary


def _write_predictions(path: Path, cases: list[Any], y: np.ndarray, prob: np.ndarray, names: list[str]) -> None:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "target", *[f"p_{n}" for n in names]])
        for case, target, p in zip(cases, y, prob, strict=True):
            writer.writerow(
                [
                    case.case_id,
                    ";".join(map(str, np.atleast_1d(target).astype(int))),
                    *[f"{v:.6f}" for v in p],
                ]
            )
