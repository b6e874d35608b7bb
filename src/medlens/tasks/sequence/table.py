"""Visit tables: reading a CSV into each subject's visits in order, fitting the features' encoding on training
visits, and encoding a subject as a (visits x columns) array with a mask of its real visits."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import InputError
from medlens.data.dataset import Case, Dataset, read_csv_table
from medlens.data.importers.visits import VISITS_FILE, order_key
from medlens.tasks.sequence.config import Feature, SequenceOptions


@dataclass
class VisitTable:
    """The visits of a table, per subject in visit order (``meta["source"]``: the file read)."""

    source: str
    subjects: dict[str, list[dict[str, str]]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawTable:
    """A CSV as read, before its columns are known to fit a model (``meta["source"]``: the file)."""

    source: str
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]
    meta: dict[str, Any] = field(default_factory=dict)


def read_raw(path: Path) -> RawTable:
    """Read a CSV of visits (any columns).

    Raises:
        InputError: a missing, unreadable or empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    header, numbered = read_csv_table(path)
    if not numbered:
        raise InputError(path, "no rows")
    return RawTable(str(path), header, numbered, {"source": str(path)})


def group_visits(
    raw: RawTable, subject: str, order: str, columns: Sequence[str], *, numeric_order: bool = True
) -> VisitTable:
    """Every subject's rows of ``raw`` sorted by ``order``.

    Raises:
        InputError: naming the file and the column, when the subject, order or a feature column is missing, or
            naming the line of a row without a subject or order.
    """
    path = Path(raw.source)
    for column in (subject, order, *columns):
        if column not in raw.header:
            raise InputError(path, f"no column {column!r} (columns: {', '.join(raw.header)})")
    subjects: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line, row in raw.rows:
        if not (row[subject] or "").strip() or not (row[order] or "").strip():
            raise InputError(path, f"line {line}: no {subject!r} or no {order!r}")
        if numeric_order and _number(row[order]) is None:
            raise InputError(path, f"line {line}: {order} {row[order]!r} is not a number")
        subjects[row[subject].strip()].append(row)
    for rows in subjects.values():
        rows.sort(key=lambda r: order_key(r[order], numeric_order))  # type: ignore[arg-type,return-value]
    return VisitTable(raw.source, dict(subjects), {"source": raw.source})


def read_visits(
    path: Path, subject: str, order: str, columns: Sequence[str], *, numeric_order: bool = True
) -> VisitTable:
    """Read a CSV of visits and group them by subject (:func:`read_raw`, :func:`group_visits`)."""
    return group_visits(read_raw(path), subject, order, columns, numeric_order=numeric_order)


def dataset_visits(dataset: Dataset, cases: Iterable[Case] | None = None) -> VisitTable:
    """The visits of a sequence dataset (``visits.csv``), of ``cases`` only when given."""
    source = dataset.spec.source
    table = read_visits(
        dataset.root / VISITS_FILE,
        source["subject"],
        source["order"],
        json.loads(source["features"]),
        numeric_order=source.get("order_kind", "number") == "number",
    )
    if cases is not None:
        wanted = [c.case_id for c in cases]
        missing = [s for s in wanted if s not in table.subjects]
        if missing:
            raise InputError(dataset.root / VISITS_FILE, f"no visits of subject(s) {', '.join(missing[:5])}")
        table.subjects = {s: table.subjects[s] for s in wanted}
    return table


def fit_features(names: Sequence[str], kinds: dict[str, str], visits: Iterable[dict[str, str]]) -> list[Feature]:
    """Each feature's encoding from the training visits: mean and SD of numbers, levels of text, and a missingness
    indicator where a value is missing."""
    rows = list(visits)
    features = []
    for name in names:
        texts = [(r.get(name) or "").strip() for r in rows]
        present = [t for t in texts if t]
        missing = len(present) < len(texts)
        if kinds[name] == "number":
            values = np.array([_number(t) for t in present if _number(t) is not None], dtype=float)
            mean = float(values.mean()) if values.size else 0.0
            sd = float(values.std()) if values.size > 1 else 1.0
            features.append(Feature(name=name, kind="number", mean=round(mean, 6), sd=round(sd if sd > 1e-9 else 1.0,
                                    6), missing_indicator=missing))  # fmt: skip
        else:
            levels = sorted(set(present))
            features.append(Feature(name=name, kind="category", levels=levels, missing_indicator=missing))
    return features


def encode(visits: Sequence[dict[str, str]], options: SequenceOptions) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One subject as ``(max_visits, width)`` float32 values, the ``(max_visits,)`` mask of real visits (padding
    after them), and the order values of the visits kept (the last ``max_visits`` when there are more)."""
    kept = list(visits)[-options.max_visits :]
    x = np.zeros((options.max_visits, options.width), np.float32)
    mask = np.zeros(options.max_visits, bool)
    for i, row in enumerate(kept):
        mask[i] = True
        column = 0
        for feature in options.features:
            text = (row.get(feature.name) or "").strip()
            if feature.kind == "number":
                value = _number(text)
                x[i, column] = 0.0 if value is None else (value - feature.mean) / feature.sd
                absent = value is None
                column += 1
            else:
                if text in feature.levels:
                    x[i, column + feature.levels.index(text)] = 1.0
                absent = not text
                column += len(feature.levels)
            if feature.missing_indicator:
                x[i, column] = float(absent)
                column += 1
    return x, mask, [(row.get(options.order) or "").strip() for row in kept]


def encode_subjects(
    table: VisitTable, options: SequenceOptions, subjects: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Several subjects stacked: ``(N, max_visits, width)``, ``(N, max_visits)`` and each one's visit orders."""
    names = list(subjects) if subjects is not None else list(table.subjects)
    encoded = [encode(table.subjects[s], options) for s in names]
    width = options.width
    x = np.stack([e[0] for e in encoded]) if encoded else np.zeros((0, options.max_visits, width), np.float32)
    mask = np.stack([e[1] for e in encoded]) if encoded else np.zeros((0, options.max_visits), bool)
    return x, mask, [e[2] for e in encoded]


def last_visits(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each subject's last real visit, ``(N, width)``: what the baselines read."""
    last = mask.sum(axis=1) - 1
    return x[np.arange(len(x)), np.maximum(last, 0)]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
