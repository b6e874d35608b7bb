"""Measure a trained model on a split of its dataset (or another dataset): ``medlens.evaluate(...)``.

Every task writes ``metrics.json`` (standard JSON) and a self-contained ``report.html`` into the output
folder, which appears whole or not at all. Intervals resample patients when the dataset's cases share patients;
``by=COLUMN`` adds every metric per subgroup of a manifest column (sex, age band, site, scanner), with the
subgroups whose headline interval lies wholly below the rest's flagged.

The folder also gets ``model_card.md``: the bundle's card with this
evaluation's held-out figures (metrics with intervals, calibration, subgroups, worst cases).

The bundle itself is changed only when asked (``update_card``, ``--update-card``): an evaluation may be on another
dataset, another split or a trial set, and a bundle that has been copied to a hospital should not change meaning
because someone measured it somewhere. Asked, ``evaluation.json`` is written into the bundle and its card
rendered again; reports then quote these figures as the model's validated performance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder, write_json, write_text_atomic
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset, load_dataset
from medlens.metrics.subgroups import Subgroups
from medlens.models.bundle import CARD_FILE, EVALUATION_FILE, Bundle
from medlens.tasks.base import get_task, load_bundle
from medlens.training.card import evaluation_record, render_card, write_model_card

log = logging.getLogger(__name__)


def evaluate(
    run_dir: str | Path,
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    split: str = "test",
    n_bootstrap: int = 1000,
    by: str | None = None,
    overwrite: bool = False,
    update_card: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Measure the run's model (the ensemble of its members) on ``split``; write metrics.json and report.html.

    Args:
        run_dir: a run folder or a bundle folder.
        out: the folder to create.
        dataset: another dataset of the same task and classes (default: the run's own).
        split: ``test``, ``val``, ``train`` or ``all``.
        n_bootstrap: resamples for the 95% intervals (0: none).
        by: a manifest column to report every metric per subgroup of (``PatientSex``, ``site``, ...); ages and
            many-valued numbers are banded (see :mod:`medlens.metrics.subgroups`).
        overwrite: replace an existing output folder that medlens made.
        update_card: also record this evaluation in the bundle (``evaluation.json``) and render its model card
            again with it (the evaluation folder's ``model_card.md`` is written either way).
        progress: called as cases are predicted.

    Example:
        >>> import medlens
        >>> medlens.evaluate("runs/pneumonia", "evals/pneumonia", split="test")["auc"]  # doctest: +SKIP
        {'value': 0.95, 'ci95': [0.93, 0.97]}
    """
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir)
    bundle.networks()
    data, cases = split_for(bundle, run_dir, dataset, split)
    groups = subgroups_by(data, cases, by) if by else None
    title = f"{data.spec.name}: {split} set ({len(cases)} cases)"
    inputs = [("run folder", run_dir), ("dataset", data.root)]
    with output_folder(out, kind="evaluation", overwrite=overwrite, inputs=inputs) as tmp:
        metrics = bundle.task.evaluate(
            bundle, data, cases, tmp, n_bootstrap=n_bootstrap, title=title, progress=progress, subgroups=groups
        )
        metrics["dataset"] = {"path": str(data.root.resolve()), "name": data.spec.name, "split": split}
        write_json(tmp / "metrics.json", metrics)
        record = evaluation_record(metrics, n_bootstrap=n_bootstrap)
        write_text_atomic(tmp / CARD_FILE, render_card(bundle.spec(), record))
    if update_card:
        write_json(bundle.root / EVALUATION_FILE, record)
        write_model_card(bundle.root, evaluation=record)
        log.info("recorded the evaluation in %s and its model card", bundle.root)
    return metrics


def split_for(bundle: Bundle, run_dir: Path, dataset: str | Path | None, split: str) -> tuple[Dataset, list[Case]]:
    """The dataset (``dataset``, or the run's own) and its ``split``, checked to be of the bundle's task and classes.

    Raises:
        InputError: naming the dataset, when its task or classes are not the model's or the split is empty.
    """
    dataset_dir = Path(dataset) if dataset else run_dataset(run_dir)
    data = load_dataset(dataset_dir)
    if get_task(data.spec.task) is not bundle.task or data.spec.classes != bundle.class_names:
        raise InputError(
            dataset_dir,
            f"{data.spec.task} with classes {data.spec.classes}; "
            f"the model is {bundle.plan.task} with {bundle.class_names}",
        )
    cases = data.split(split)
    if not cases:
        raise InputError(dataset_dir, f"no cases in split {split!r}")
    return data, cases


def subgroups_by(data: Dataset, cases: list[Case], column: str) -> Subgroups:
    """The subgroup of each case by a manifest column.

    Raises:
        InputError: naming the manifest, the column and the columns there are, when it has no such column.
    """
    from medlens.metrics.subgroups import subgroups_of

    if column not in data.columns:
        raise InputError(
            data.root / data.spec.manifest, f"no column {column!r} to group by (columns: {', '.join(data.columns)})"
        )
    return subgroups_of(column, [case.value(column) for case in cases])


def run_dataset(run_dir: Path) -> Path:
    """The dataset a run was trained on (its ``run.yaml``), for a run folder or the bundle inside it."""
    for candidate in (run_dir / "run.yaml", run_dir.parent / "run.yaml"):
        if candidate.is_file():
            try:
                recorded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                raise InputError(candidate, "not a readable YAML file") from None
            if isinstance(recorded, dict) and recorded.get("dataset"):
                return Path(str(recorded["dataset"]))
            raise InputError(candidate, "does not name the run's dataset; pass --dataset")
    raise InputError(run_dir, "no run.yaml to find the dataset; pass --dataset")
