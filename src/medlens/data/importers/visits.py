"""A table of visits (one row per visit, several per subject) as a ``sequence`` dataset: one case per subject.

The rules, each recorded in ``dataset.yaml`` (``source``) so that a dataset says how it was made:

- **Outcome.** A subject's outcome is the target at their last visit (by the order column; the last non-empty one).
  Binary: ``positive`` names the positive value(s); without it, the one value that reads as the absence of the
  condition (``0``, ``no``, ``false``, ``negative``, ``normal``, ``healthy``, ``control``, ``none``, or a name
  starting with ``non``/``no ``/``not``) is negative and every other value positive (OASIS-2: ``Nondemented``
  negative; ``Demented``, and ``Converted`` where a copy has it, positive: "demented by the last visit"). When no
  single value reads so, ``positive`` must be given.
- **Features.** Every other column is a feature, except: the subject, order and target columns; the columns given
  in ``exclude``; text columns that identify rows (more than half of the values distinct, e.g. a scan ID) or have
  more than 20 levels; columns with one value or none; and columns that leak the outcome: alone they separate it with
  a ROC AUC of at least ``leak_auc`` on the training subjects' last visits (OASIS-2: ``CDR``, the rating that
  defines dementia). Numbers are standardised and text one-hot encoded by the task on the training split.
- **Split.** By subject (no subject in two splits), stratified by outcome, seeded.

- **Images.** A column of image paths (PNG, JPEG, TIFF, DICOM, NIfTI; relative to the table's folder, or absolute)
  is used only when named in ``images``, with an ``encoder`` (:mod:`medlens.models.image_encoder`: a medlens
  classification or regression run, whose network's penultimate features are used, or a ``medlens pretrain``
  folder). There is no default encoder: medlens downloads none, and a network that never saw this kind of image
  gives features that mean nothing here. Each visit's image becomes ``dim`` number features ``COLUMN:e000`` ...,
  computed once here and kept in ``visits.csv`` (with the image's absolute path), so planning, training, the
  baselines and evaluation read them like any measurement; ``source.images`` records the encoder (path, SHA-256 of
  its weights, size). Every visit must have its image: an empty cell or a missing file is an error naming the line
  or the file. A column not named in ``images`` whose values are all image file names is left out, saying so.

The dataset folder holds ``visits.csv`` (the subject, order and feature columns of every visit) beside the
manifest, so that it is whole in itself; each case's ``image`` names that file.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import output_folder, write_table
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, read_csv_table, write_dataset
from medlens.data.importers import register_importer
from medlens.data.splits import assign_splits

log = logging.getLogger(__name__)

VISITS_FILE = "visits.csv"
MAX_LEVELS = 20
_NEGATIVE = re.compile(r"^(0|no|false|negative|normal|healthy|control|none|non.*|no[ _-].*|not.*)$", re.IGNORECASE)


@register_importer("visits")
def import_visits(
    table: str | Path,
    out: str | Path,
    *,
    subject_column: str,
    order_column: str,
    target_column: str,
    exclude: Sequence[str] = (),
    positive: Sequence[str] = (),
    leak_auc: float = 0.95,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    images: Sequence[str] = (),
    encoder: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Import a CSV of visits into a ``sequence`` dataset (one case per subject; see the module's rules).

    Args:
        table: the CSV file, one row per visit.
        out: the dataset folder to create.
        subject_column: column of subject IDs (a subject's visits form one sequence).
        order_column: column ordering a subject's visits (numbers, or text in natural order).
        target_column: column of the outcome; a subject's outcome is its value at the last visit.
        exclude: further columns not to use as features.
        positive: the value(s) of the target that make the positive class (default: see the module).
        leak_auc: columns that alone separate the outcome with this ROC AUC on the training subjects are excluded.
        val_fraction: share of subjects for validation.
        test_fraction: share of subjects for testing.
        seed: seed of the split.
        images: columns of image paths, each visit's image turned into embedding features by ``encoder``.
        encoder: the frozen image encoder for ``images`` (a medlens run or bundle, or a pretrain folder).
        overwrite: replace an existing dataset folder that medlens made.
        progress: called as images are embedded.
    """
    table = Path(table)
    if not table.is_file():
        raise InputError(table, "file not found")
    header, numbered = read_csv_table(table)
    if not numbered:
        raise InputError(table, "no rows")
    if images and encoder is None:
        raise ConfigError(
            "--encoder",
            "--images needs an image encoder: a medlens classification or regression run trained on such images, "
            "or a 'medlens pretrain' folder (medlens downloads none)",
        )
    for column in (subject_column, order_column, target_column, *exclude, *images):
        if column not in header:
            raise InputError(table, f"no column {column!r} (columns: {', '.join(header)})")
    by_subject: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line, row in numbered:
        subject = (row[subject_column] or "").strip()
        if not subject:
            raise InputError(table, f"line {line}: no subject in column {subject_column!r}")
        if not (row[order_column] or "").strip():
            raise InputError(table, f"line {line}: no visit order in column {order_column!r}")
        by_subject[subject].append((line, row))
    numeric_order = all(_number(r[order_column]) is not None for _, r in numbered)
    for subject, visits in by_subject.items():
        visits.sort(key=lambda v: order_key(v[1][order_column], numeric_order))
        seen: dict[object, int] = {}
        for line, row in visits:
            key = order_key(row[order_column], numeric_order)
            if key in seen:
                raise InputError(table, f"line {line}: subject {subject} has visit {row[order_column]!r} twice "
                                 f"(also line {seen[key]})")  # fmt: skip
            seen[key] = line
    outcomes = {s: _outcome(table, s, v, target_column) for s, v in by_subject.items()}
    values = sorted(set(outcomes.values()), key=natural)
    if len(values) < 2:
        raise InputError(table, f"column {target_column!r} has one outcome only ({values}); nothing to predict")
    positive_values, rule = _positive(table, target_column, values, list(positive))
    negative_values = [v for v in values if v not in positive_values]
    classes = [" or ".join(negative_values), " or ".join(positive_values)]
    cases = [
        Case(subject, subject, [VISITS_FILE], "1" if outcomes[subject] in positive_values else "0", "",
             {"visits": str(len(visits)), target_column: outcomes[subject]})
        for subject, visits in sorted(by_subject.items(), key=lambda item: natural(item[0]))
    ]  # fmt: skip
    assign_splits(cases, [c.target for c in cases], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    train_last = {c.case_id: by_subject[c.case_id][-1][1] for c in cases if c.split == "train"}
    train_y = np.array([int(c.target) for c in cases if c.split == "train"])
    skip = {subject_column, order_column, target_column, *exclude, *images}
    candidates = [c for c in header if c and c not in skip]
    features, excluded = choose_features(candidates, [r for _, r in numbered], list(train_last.values()), train_y,
                                         leak_auc)  # fmt: skip
    excluded = {subject_column: "the subject", order_column: "the visit order (encoded as the visit's position)",
                target_column: "the target"} | {c: "excluded by the user" for c in exclude} | excluded  # fmt: skip
    embedded: dict[str, dict[str, Any]] = {}
    if images:
        from medlens.models.image_encoder import load_encoder

        image_encoder = load_encoder(encoder)  # type: ignore[arg-type]
        for column in images:
            names, paths = embed_column(table, numbered, column, image_encoder, progress)
            features += [{"name": n, "kind": "number"} for n in names]
            embedded[column] = image_encoder.record() | {"features": names}
            log.info("column %r: %d images embedded into %d features by %s", column, len(paths), len(names),
                     image_encoder.description)  # fmt: skip
    if not features:
        raise InputError(table, f"no column is left to learn from (excluded: {', '.join(excluded)})")
    source = {
        "format": "visits",
        "file": str(table.resolve()),
        "subject": subject_column,
        "order": order_column,
        "order_kind": "number" if numeric_order else "text",
        "target": target_column,
        "positive": json.dumps(positive_values),
        "negative": json.dumps(negative_values),
        "outcome_rule": f"the target at the subject's last visit; {rule}",
        "features": json.dumps([f["name"] for f in features]),
        "feature_kinds": json.dumps({f["name"]: f["kind"] for f in features}),
        "excluded": json.dumps(excluded),
    }
    if embedded:
        source["images"] = json.dumps(embedded)
    spec = DatasetSpec(name=table.stem, task="sequence", spatial_dims=2, modality="OT", channels=["visits"],
                       classes=classes, source=source)  # fmt: skip
    kept = [subject_column, order_column, *images, *(f["name"] for f in features)]
    rows = [{c: row[c] for c in kept} for visits in by_subject.values() for _, row in visits]
    with output_folder(Path(out), kind="dataset", overwrite=overwrite, inputs=[("input", table)]) as tmp:
        write_table(tmp / VISITS_FILE, rows)
        write_dataset(tmp, spec, cases)
    counts = Counter(c.target for c in cases)
    log.info("imported %d subjects (%d visits) from %s: %s %d, %s %d; %d features; excluded %s", len(cases),
             len(numbered), table, classes[0], counts["0"], classes[1], counts["1"], len(features),
             ", ".join(f"{k} ({v})" for k, v in excluded.items()))  # fmt: skip
    return load_dataset(out)


def choose_features(
    columns: list[str], rows: list[dict[str, str]], train_last: list[dict[str, str]], train_y: np.ndarray,
    leak_auc: float,
) -> tuple[list[dict[str, str]], dict[str, str]]:  # fmt: skip
    """The feature columns (``{"name", "kind"}``, kind ``number`` or ``category``) and the excluded ones with why."""
    features: list[dict[str, str]] = []
    excluded: dict[str, str] = {}
    for column in columns:
        texts = [(r[column] or "").strip() for r in rows]
        present = [t for t in texts if t]
        distinct = set(present)
        numbers = [_number(t) for t in present]
        kind = "number" if present and all(n is not None for n in numbers) else "category"
        if present and kind == "category" and all(looks_like_image(t) for t in distinct):
            excluded[column] = f"holds image paths: give --images {column!r} --encoder RUN to use them as image " \
                               "embeddings"  # fmt: skip
            log.warning("column %r holds image paths; it is not used (give --images and --encoder to embed them)",
                        column)  # fmt: skip
        elif len(distinct) < 2:
            excluded[column] = "one value or none"
        elif kind == "category" and len(distinct) > len(rows) / 2:
            excluded[column] = f"identifies rows ({len(distinct)} distinct values in {len(rows)} rows)"
        elif kind == "category" and len(distinct) > MAX_LEVELS:
            excluded[column] = f"{len(distinct)} levels of text (at most {MAX_LEVELS} are one-hot encoded)"
        else:
            auc = _alone_auc([(r[column] or "").strip() for r in train_last], train_y, kind)
            if auc is not None and auc >= leak_auc:
                excluded[column] = f"leaks the outcome: alone it separates it with AUC {auc:.3f} on the training " \
                                   f"subjects' last visits (>= {leak_auc})"  # fmt: skip
            else:
                features.append({"name": column, "kind": kind})
    return features, excluded


def looks_like_image(text: str) -> bool:
    """True when ``text`` is named like an image file medlens reads (by its suffix: PNG, JPEG, TIFF, DICOM, NIfTI)."""
    from medlens.data.sources import IMAGE_SUFFIXES

    name = text.strip().lower()
    return name.endswith(".nii.gz") or Path(name).suffix in IMAGE_SUFFIXES


def image_path(table: Path, text: str) -> Path:
    """An image path as written in a table: absolute, or relative to the table's folder."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else table.parent / path


def embed_column(
    table: Path, numbered: list[tuple[int, dict[str, str]]], column: str, encoder: Any, progress: ProgressFn | None
) -> tuple[list[str], list[Path]]:
    """Embed every row's image of ``column`` (rows changed in place: the image's absolute path, and one number
    column per embedding dimension, ``COLUMN:e000``...); the feature names and the image paths.

    Raises:
        InputError: naming the line of a row without an image, or the image file that is missing.
    """
    paths = []
    for line, row in numbered:
        text = (row[column] or "").strip()
        if not text:
            raise InputError(table, f"line {line}: no image in column {column!r} (each visit needs its image: drop "
                             "the visit, or leave the column out of --images)")  # fmt: skip
        path = image_path(table, text)
        if not path.exists():
            raise InputError(path, f"image not found (line {line} of {table.name}, column {column!r})")
        paths.append(path)
    vectors = encoder.embed(paths, progress)
    names = embedding_names(column, vectors.shape[1])
    for (_, row), path, vector in zip(numbered, paths, vectors, strict=True):
        row[column] = str(path.resolve())
        row.update({n: format(float(v), ".6g") for n, v in zip(names, vector, strict=True)})
    return names, paths


def embedding_names(column: str, dim: int) -> list[str]:
    """The feature names of an image column's embedding: ``COLUMN:e000``, ``COLUMN:e001``, ..."""
    return [f"{column}:e{k:03d}" for k in range(dim)]


def _alone_auc(texts: list[str], y: np.ndarray, kind: str) -> float | None:
    """How well one column alone separates the outcome: max(AUC, 1 - AUC) of its values (numbers, missing as the
    median) or of its levels' positive rates (text)."""
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    if kind == "number":
        values = np.array([_number(t) if t else math.nan for t in texts], dtype=float)
        values = np.where(np.isnan(values), np.nanmedian(values) if np.isfinite(values).any() else 0.0, values)
    else:
        rate = {level: float(np.mean(y[[t == level for t in texts]])) for level in set(texts)}
        values = np.array([rate[t] for t in texts])
    auc = float(roc_auc_score(y, values))
    return max(auc, 1 - auc)


def _outcome(table: Path, subject: str, visits: list[tuple[int, dict[str, str]]], column: str) -> str:
    for _, row in reversed(visits):
        value = (row[column] or "").strip()
        if value:
            return value
    raise InputError(table, f"subject {subject} (line {visits[0][0]}) has no value in column {column!r} at any visit")


def _positive(table: Path, column: str, values: list[str], given: list[str]) -> tuple[list[str], str]:
    if given:
        unknown = [v for v in given if v not in values]
        if unknown:
            raise ConfigError("--positive", f"{unknown} not among the values of {column!r} in {table}: {values}")
        if len(given) == len(values):
            raise ConfigError("--positive", f"every value of {column!r} is positive; leave one negative")
        return [v for v in values if v in given], f"positive: {', '.join(given)} (given)"
    negative = [v for v in values if _NEGATIVE.match(v)]
    if len(negative) != 1:
        raise ConfigError(
            "--positive",
            f"say which value(s) of {column!r} in {table} are the positive class ({', '.join(values)}): "
            "no single value reads as the absence of the condition",
        )
    positive = [v for v in values if v != negative[0]]
    return positive, f"{negative[0]} negative (reads as the absence of the condition), every other value positive"


def order_key(text: str, numeric: bool) -> Any:
    """The sort key of a visit's order value (a number, or text in natural order)."""
    return _number(text) if numeric else natural(text.strip())


def natural(text: str) -> tuple[object, ...]:
    """Natural sort key: digits compare as numbers (``visit 2`` before ``visit 10``)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
