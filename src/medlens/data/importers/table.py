"""A CSV table of image paths and labels.

Columns (names configurable): ``image`` (path, relative to the CSV's folder or absolute), ``label`` (a class
name; several joined by ``|`` make a multi-label task), and optionally ``patient_id`` and ``split``. The table is
UTF-8 text.

Images stay where they are. Importing a table is the choice to use the files it lists wherever they are, so the
folders holding them (merged into a few common ones) are recorded under ``image_roots`` in ``dataset.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medlens.core.errors import InputError
from medlens.data.dataset import SPLITS, Case, Dataset, read_csv_table
from medlens.data.importers import register_importer
from medlens.data.sources import absolute_path, common_folders, write_picture_dataset
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
    overwrite: bool = False,
) -> Dataset:
    """Import a CSV of image paths and labels into a classification (or multi-label) dataset."""
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
    multilabel = any("|" in (r[label_column] or "") for r in rows)
    label_sets = [[v.strip() for v in (r[label_column] or "").split("|") if v.strip()] for r in rows]
    unlabeled = [line for line, labels in zip(lines, label_sets, strict=True) if not labels]
    if unlabeled:
        raise InputError(table, f"row(s) without a label at line(s) {', '.join(map(str, unlabeled[:5]))}")
    class_names = sorted({v for labels in label_sets for v in labels}, key=_natural)
    if len(class_names) < 2:
        raise InputError(table, f"needs at least two classes, found {class_names}")
    cases: list[Case] = []
    for number, (line, row, labels) in enumerate(zip(lines, rows, label_sets, strict=True), start=1):
        if not row[image_column].strip():
            raise InputError(table, f"line {line}: no image path in column {image_column!r}")
        path = absolute_path(table.parent / row[image_column].strip())  # an absolute path stays as it is
        if not path.exists():
            raise InputError(path, f"image listed at line {line} of {table} does not exist")
        split = (row.get(split_column) or "").strip().lower()
        split = {"validation": "val", "valid": "val", "training": "train"}.get(split, split)
        if split and split not in SPLITS:
            raise InputError(table, f"line {line}: unknown split {split!r}")
        if multilabel:
            target = ";".join("1" if n in labels else "0" for n in class_names)
        else:
            target = str(class_names.index(labels[0]))
        patient = (row.get(patient_column) or "").strip() or path.stem
        cases.append(Case(f"{number:06d}_{path.stem}", patient, [str(path)], target, split))
    assign_splits(cases, [c.target for c in cases], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    dataset = write_picture_dataset(
        Path(out),
        cases,
        name=table.stem,
        task="multilabel" if multilabel else "classification",
        class_names=class_names,
        source={"format": "csv", "file": str(table.resolve())},
        image_roots=common_folders(Path(c.image[0]) for c in cases),
        overwrite=overwrite,
        inputs=[table],
    )
    log.info("imported %d cases in %d classes from %s", len(cases), len(class_names), table)
    return dataset


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)
