"""A CSV table of image paths and labels.

Columns (names configurable): ``image`` (path, relative to the CSV's folder or absolute), ``label`` (a class
name; several joined by ``|`` make a multi-label task; with ``target_type="continuous"`` a number, which makes a
regression task), and optionally ``patient_id`` and ``split``. The table is UTF-8 text. Its other columns (sex,
age, site, scanner, ...) are kept as manifest columns, to group results by (``evaluate --by COLUMN``); for DICOM
images, the files' PatientSex, PatientAge and Manufacturer are kept too (the table's own column wins).

Images stay where they are. Importing a table is the choice to use the files it lists wherever they are, so the
folders holding them (merged into a few common ones) are recorded under ``image_roots`` in ``dataset.yaml``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np

from medlens.core.errors import InputError
from medlens.data.dataset import MANIFEST_COLUMNS, SPLITS, Case, Dataset, read_csv_table
from medlens.data.importers import register_importer
from medlens.data.sources import absolute_path, case_facts, common_folders, write_picture_dataset
from medlens.data.splits import assign_splits

log = logging.getLogger(__name__)


@register_importer("csv")
def import_csv(
    table: str | Path,
    out: str | Path,
    *,
    image_column: str = "image",
    label_column: str = "label",
    patient_column: str = "patient_id",
    split_column: str = "split",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    target_type: Literal["categorical", "continuous"] = "categorical",
    unit: str = "",
    overwrite: bool = False,
    label_fraction: float = 1.0,
) -> Dataset:
    """Import a CSV of image paths and labels into a classification (or multi-label) dataset, or, with
    ``target_type="continuous"``, of image paths and numbers into a regression dataset.

    Args:
        table: the CSV file.
        out: the dataset folder to create.
        image_column: column of image paths (relative to the CSV's folder, or absolute).
        label_column: column of class names (``a|b`` for several labels), or of numbers.
        patient_column: column of patient IDs (splits keep a patient's cases together).
        split_column: column of train/val/test, when the table has its own split.
        val_fraction: share of patients for validation, when the table has no split.
        test_fraction: share of patients for testing, when the table has no split.
        seed: seed of the split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        target_type: ``categorical`` (classes) or ``continuous`` (a value per image: regression; the split is
            stratified by quintile of the value).
        unit: the value's unit (continuous targets), shown with predictions and metrics.
        overwrite: replace an existing dataset folder that medlens made.
    """
    if target_type not in ("categorical", "continuous"):
        raise InputError(Path(table), f"target type {target_type!r} is not categorical or continuous")
    table = Path(table)
    if not table.is_file():
        raise InputError(table, "file not found")
    header, numbered = read_csv_table(table)
    rows = [row for _, row in numbered]
    lines = [line for line, _ in numbered]
    columns = set(header)
    if not rows:
        raise InputError(table, "no rows")
    for column in (image_column, label_column):
        if column not in columns:
            raise InputError(table, f"no column {column!r} (columns: {', '.join(sorted(columns))})")
    continuous = target_type == "continuous"
    multilabel = not continuous and any("|" in (r[label_column] or "") for r in rows)
    label_sets = [[v.strip() for v in (r[label_column] or "").split("|") if v.strip()] for r in rows]
    unlabeled = [line for line, labels in zip(lines, label_sets, strict=True) if not labels]
    if unlabeled:
        raise InputError(table, f"row(s) without a label at line(s) {', '.join(map(str, unlabeled[:5]))}")
    values = _values(table, lines, rows, label_column) if continuous else []
    class_names = [label_column] if continuous else sorted({v for labels in label_sets for v in labels}, key=_natural)
    if not continuous and len(class_names) < 2:
        raise InputError(table, f"needs at least two classes, found {class_names}")
    used = {image_column, label_column, patient_column, split_column, *MANIFEST_COLUMNS}
    kept = [c for c in dict.fromkeys(header) if c.strip() and c not in used]  # further columns, kept as they are
    cases: list[Case] = []
    for number, (line, row, labels) in enumerate(zip(lines, rows, label_sets, strict=True), start=1):
        if not row[image_column].strip():
            raise InputError(table, f"line {line}: no image path in column {image_column!r}")
        path = absolute_path(table.parent / row[image_column].strip())  # an absolute path stays as it is
        try:
            exists = path.exists()
        except OSError as exc:  # a name the file system cannot hold (too long, ...)
            raise InputError(
                table, f"line {line}: image path {row[image_column].strip()!r:.80}: {exc.strerror}"
            ) from None
        if not exists:
            raise InputError(path, f"image listed at line {line} of {table} does not exist")
        split = (row.get(split_column) or "").strip().lower()
        split = {"validation": "val", "valid": "val", "training": "train"}.get(split, split)
        if split and split not in SPLITS:
            raise InputError(table, f"line {line}: unknown split {split!r}")
        if continuous:
            target = repr(values[number - 1])
        elif multilabel:
            target = ";".join("1" if n in labels else "0" for n in class_names)
        else:
            target = str(class_names.index(labels[0]))
        patient = (row.get(patient_column) or "").strip() or path.stem
        extra = case_facts(path)[1] | {c: (row.get(c) or "").strip() for c in kept}
        cases.append(Case(f"{number:06d}_{path.stem}", patient, [str(path)], target, split, extra))
    strata = _quintiles(values) if continuous else [c.target for c in cases]
    assign_splits(cases, strata, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    source = {"format": "csv", "file": str(table.resolve())} | ({"unit": unit} if continuous and unit else {})
    dataset = write_picture_dataset(
        Path(out),
        cases,
        name=table.stem,
        task="regression" if continuous else "multilabel" if multilabel else "classification",
        class_names=class_names,
        source=source,
        image_roots=common_folders(Path(c.image[0]) for c in cases),
        overwrite=overwrite,
        label_fraction=label_fraction,
        label_seed=seed,
        inputs=[table],
    )
    if continuous:
        log.info("imported %d cases with %s from %.4g to %.4g from %s", len(cases), label_column, min(values),
                 max(values), table)  # fmt: skip
    else:
        log.info("imported %d cases in %d classes from %s", len(cases), len(class_names), table)
    return dataset


def _values(table: Path, lines: list[int], rows: list[dict[str, str]], column: str) -> list[float]:
    """The column's numbers; a line whose value is not a finite number is an error naming it."""
    values = []
    for line, row in zip(lines, rows, strict=True):
        text = (row[column] or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(table, f"line {line}: {column} {text!r} is not a finite number")
        values.append(value)
    return values


def _quintiles(values: list[float]) -> list[str]:
    """The quintile of each value, as a stratum for the split (so every split covers the range)."""
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    return [f"q{int(np.searchsorted(edges, v, side='right'))}" for v in values]


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)
