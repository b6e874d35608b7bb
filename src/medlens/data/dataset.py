"""The on-disk dataset every importer writes and every later stage reads.

A dataset is a folder holding ``dataset.yaml`` (what the data is) and ``manifest.csv`` (one row per case)::

    name: pneumoniamnist
    task: classification            # a registered task: classification, multilabel, segmentation, detection, regression
    spatial_dims: 2
    modality: XR
    channels: [gray]
    classes: [normal, pneumonia]    # class names (label names for multilabel, foreground+background for segmentation)
    manifest: manifest.csv
    image_roots: [/data/xrays]      # folders outside this one that the manifest refers to (written by importers)

Manifest columns: ``case_id``, ``patient_id``, ``image`` (path relative to the dataset folder, or absolute;
several channels joined by ``;``), ``target`` (class index; ``;``-joined 0/1 flags for multilabel; a mask path;
a boxes JSON path), ``split`` (``train``, ``val``, ``test``, ``unlabeled`` for a training image whose label an import
with ``--label-fraction`` left out (its target is empty), or empty when not yet split). Both files are UTF-8.
Further columns are optional and kept as they are (:attr:`Case.extra`): facts about a case to group results by
(``evaluate --by COLUMN``), such as ``PatientSex``, ``PatientAge`` and ``Manufacturer``, which the importers that
read DICOM record, or the other columns of an imported table. A manifest with only the five columns is read and
written as before.

Where paths may point. A dataset folder may come from elsewhere, and its manifest must not make medlens read
other files. Every path in the manifest (images, and the mask or boxes path of a segmentation or detection
target) must lie inside the dataset folder or inside one of ``image_roots``; :func:`load_dataset` and
:func:`write_dataset` refuse any other, naming the manifest and the case. Importers that leave images where
they are list the folders they were given (``import csv`` the common folders of the paths its table lists), so
referencing them is a recorded choice, reviewable in one line instead of one row per case; a received
``dataset.yaml`` with ``image_roots`` deserves that look.

- The check is on the path as written: ``.`` and ``..`` are resolved in the string (``os.path.normpath``), and
  the normalised path is the one later stages read. Symbolic links are not followed: a link inside the dataset
  folder or an image root was put there by whoever owns the folder (tests link real data that way), and a link
  target is not what the manifest names. Image roots are matched both as written and with their links resolved.
- A relative image root is relative to the dataset folder.
- Datasets written before ``image_roots`` existed have none. Their paths inside the folder load as before;
  absolute paths elsewhere are refused with a message that says how to accept them: re-import the data, or add
  the folder to ``image_roots`` in ``dataset.yaml``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import atomic_file

SPLITS = ("train", "val", "test")
UNLABELED = "unlabeled"  # training images whose labels were left out (import --label-fraction); see data/labels.py
MANIFEST_COLUMNS = ("case_id", "patient_id", "image", "target", "split")


class LabelSubset(BaseModel):
    """The share of training labels an import kept (``--label-fraction``), and the seed that chose them."""

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(gt=0, le=1)
    seed: int = 0


class DatasetSpec(BaseModel):
    """The contents of ``dataset.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task: str = Field(description="the task's registry name (classification, multilabel, segmentation, ...)")
    spatial_dims: Literal[2, 3]
    modality: str = "OT"
    channels: list[str] = Field(default_factory=lambda: ["gray"])
    classes: list[str]
    manifest: str = "manifest.csv"
    source: dict[str, str] = Field(default_factory=dict)
    image_roots: list[str] = Field(default_factory=list)
    labels: LabelSubset | None = Field(None, description="set when only a share of the training labels was kept")


@dataclass
class Case:
    """One row of the manifest.

    Attributes:
        extra: the row's further columns (name to text), e.g. ``PatientSex``; empty for a five-column manifest.
    """

    case_id: str
    patient_id: str
    image: list[str]
    target: str
    split: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_row(self) -> dict[str, str]:
        return {
            "case_id": self.case_id,
            "patient_id": self.patient_id,
            "image": ";".join(self.image),
            "target": self.target,
            "split": self.split,
            **self.extra,
        }

    def value(self, column: str) -> str:
        """The text of one manifest column for this case (a standard column or a further one; empty if absent)."""
        if column in MANIFEST_COLUMNS:
            return self.to_row()[column]
        return self.extra.get(column, "")


def extra_columns(cases: list[Case]) -> list[str]:
    """The further columns the cases carry, in order of first appearance."""
    return list(dict.fromkeys(name for case in cases for name in case.extra))


@dataclass
class Dataset:
    """A dataset folder: its spec and its cases."""

    root: Path
    spec: DatasetSpec
    cases: list[Case] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def columns(self) -> list[str]:
        """Every manifest column: the five standard ones, then the further ones."""
        return [*MANIFEST_COLUMNS, *extra_columns(self.cases)]

    def split(self, name: str) -> list[Case]:
        """The labelled cases of one split (``all`` for every labelled case); unlabeled ones are never returned."""
        if name == "all":
            return [c for c in self.cases if c.split != UNLABELED]
        if name not in SPLITS:
            raise ConfigError("split", f"unknown split {name!r} (choose from train, val, test, all)")
        return [c for c in self.cases if c.split == name]

    def unlabeled(self) -> list[Case]:
        """The training images kept without their labels (``import --label-fraction``), for pretraining."""
        return [c for c in self.cases if c.split == UNLABELED]

    def image_paths(self, case: Case) -> list[Path]:
        return [self.root / p for p in case.image]

    def class_index(self, case: Case) -> int:
        """The class index of a classification case, validated against the declared classes."""
        try:
            index = int(case.target)
        except ValueError:
            raise InputError(
                self.root / self.spec.manifest,
                f"case {case.case_id}: target {case.target!r} is not a class index",
            ) from None
        if not 0 <= index < self.num_classes:
            raise InputError(
                self.root / self.spec.manifest,
                f"case {case.case_id}: class {index} outside the {self.num_classes} declared classes",
            )
        return index

    def label_vector(self, case: Case) -> list[int]:
        """The 0/1 flags of a multilabel case."""
        flags = [int(v) for v in case.target.split(";")]
        if len(flags) != self.num_classes:
            raise InputError(
                self.root / self.spec.manifest,
                f"case {case.case_id}: {len(flags)} label flags for {self.num_classes} declared labels",
            )
        return flags


def write_dataset(root: str | Path, spec: DatasetSpec, cases: list[Case]) -> Dataset:
    """Write ``dataset.yaml`` and the manifest into ``root`` (atomically, file by file, as UTF-8).

    Raises:
        InputError: duplicate case ids, or a path outside ``root`` and ``spec.image_roots`` (nothing is written).
    """
    root = Path(root)
    _check_unique_ids(root, cases)
    manifest = _manifest_path(root, spec)
    cases = _checked_paths(root, spec, cases, manifest)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*MANIFEST_COLUMNS, *extra_columns(cases)], restval="")
    writer.writeheader()
    for case in cases:
        writer.writerow(case.to_row())
    with atomic_file(manifest, "wb") as handle:
        handle.write(text.getvalue().encode("utf-8"))  # type: ignore[attr-defined]
    with atomic_file(root / "dataset.yaml", "wb") as handle:
        raw = spec.model_dump(exclude={"labels"} if spec.labels is None else None)  # older readers: no null key
        handle.write(yaml.safe_dump(raw, sort_keys=False).encode("utf-8"))  # type: ignore[attr-defined]
    return Dataset(root=root, spec=spec, cases=cases)


def load_dataset(root: str | Path) -> Dataset:
    """Read a dataset folder, validating ``dataset.yaml``, the manifest and where its paths point.

    Raises:
        InputError: a missing or unreadable file, a manifest row that does not fit its header, duplicate case
            ids, or a path outside the dataset folder and its ``image_roots`` (see the module docstring).
        ConfigError: a key of ``dataset.yaml`` that is unknown or has an invalid value.
    """
    root = Path(root)
    spec_path = root / "dataset.yaml"
    if not spec_path.is_file():
        raise InputError(root, "not a medlens dataset (no dataset.yaml); create one with 'medlens import'")
    raw = load_yaml(spec_path)
    if raw is None:
        raise InputError(spec_path, "empty (a dataset.yaml holds name, task, spatial_dims and classes)")
    if not isinstance(raw, dict):
        kind = "list" if isinstance(raw, list) else "single value"
        raise InputError(spec_path, f"not a mapping of keys to values (it holds a {kind})")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{spec_path}: {key}", first["msg"]) from None
    manifest = _manifest_path(root, spec)
    if not manifest.is_file():
        raise InputError(manifest, "manifest missing")
    columns, rows = read_csv_table(manifest)
    missing = set(MANIFEST_COLUMNS) - set(columns)
    if missing:
        raise InputError(manifest, f"manifest lacks column(s) {', '.join(sorted(missing))}")
    further = [c for c in dict.fromkeys(columns) if c and c not in MANIFEST_COLUMNS]
    cases = [
        Case(
            case_id=row["case_id"],
            patient_id=row["patient_id"] or row["case_id"],
            image=[p for p in row["image"].split(";") if p],
            target=row["target"],
            split=row["split"] or "",
            extra={name: row[name] for name in further},
        )
        for _, row in rows
    ]
    known = (*SPLITS, UNLABELED)
    unknown = [(line, row["split"]) for line, row in rows if row["split"] and row["split"] not in known]
    if unknown:
        line, split = unknown[0]
        raise InputError(manifest, f"line {line}: unknown split {split!r} (train, val, test, unlabeled, or empty)")
    if not cases:
        raise InputError(manifest, "manifest has no cases")
    _check_unique_ids(manifest, cases)
    return Dataset(root=root, spec=spec, cases=_checked_paths(root, spec, cases, manifest))


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    Raises:
        InputError: the file cannot be read, or is not UTF-8 (naming the line of the first bad byte).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            path, f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def load_yaml(path: Path) -> object:
    """The parsed content of a UTF-8 YAML file (safe loader: plain data only).

    Raises:
        InputError: unreadable, not UTF-8, or not valid YAML (with the line of the problem).
    """
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(path, f"not valid YAML ({where}{problem})") from None


def read_csv_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of a UTF-8 CSV file; each row with the line it starts on. Blank lines are skipped.

    Raises:
        InputError: not UTF-8, a NUL character, a row with more or fewer fields than the header, or a row the
            csv module cannot parse; the message names the line.
    """
    text = read_text(path)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError(path, f"line {line}: a NUL character (not a text table; saved as UTF-16 or a spreadsheet?)")
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    line = 0
    try:
        for fields in reader:
            line, start = reader.line_num, line + 1
            if not fields:
                continue
            if header is None:
                header = fields
            elif len(fields) != len(header):
                raise InputError(
                    path,
                    f"line {start}: {len(fields)} field(s) where the header has {len(header)}"
                    " (a comma inside an unquoted value, or a missing value?)",
                )
            else:
                rows.append((start, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:
        raise InputError(path, f"line {reader.line_num}: not valid CSV ({exc})") from None
    return header or [], rows


def _manifest_path(root: Path, spec: DatasetSpec) -> Path:
    """Where the manifest is: a file inside the dataset folder (``dataset.yaml`` cannot point elsewhere)."""
    base = Path(os.path.abspath(root))
    manifest = Path(os.path.normpath(base / spec.manifest))
    if manifest == base or not manifest.is_relative_to(base):
        raise InputError(root / "dataset.yaml", f"manifest {spec.manifest!r} is not a file inside the dataset folder")
    return root / os.path.relpath(manifest, base)


def _checked_paths(root: Path, spec: DatasetSpec, cases: list[Case], where: Path) -> list[Case]:
    """The cases with their paths normalised, once each is known to lie in the dataset folder or an image root."""
    base = Path(os.path.abspath(root))
    allowed: list[Path] = []
    for folder in [base, *(base / r for r in spec.image_roots)]:
        for form in (Path(os.path.normpath(folder)), Path(os.path.realpath(folder))):
            if form not in allowed:
                allowed.append(form)

    def checked(case: Case, what: str, value: str) -> str:
        if not value:
            return value
        path = Path(os.path.normpath(base / value))
        if not any(path.is_relative_to(folder) for folder in allowed):
            raise InputError(
                where,
                f"case {case.case_id}: {what} {value!r} is outside the dataset folder and the folders listed under"
                " image_roots in dataset.yaml; refusing to read it. If the dataset is yours and the path is right,"
                " re-import it (importers record the folders they reference) or add the folder to image_roots",
            )
        normal = os.path.normpath(value)
        # a relative path that leaves the folder for an image root is kept absolute, as checked: the system would
        # resolve its '..' after following a linked dataset folder, which is not the path checked above
        return str(path) if normal.split(os.sep)[0] == os.pardir else normal

    return [
        replace(
            case,
            image=[checked(case, "image", p) for p in case.image],
            target=case.target if is_value_target(case.target) else checked(case, "target", case.target),
        )
        for case in cases
    ]


def is_value_target(target: str) -> bool:
    """True for a target that is a value (a class index, ``;``-joined label flags, a number), not a file path.

    Decided by the text itself rather than by the task's name, so every task (and any to come) gets the check.
    """
    try:
        [float(part) for part in target.split(";")]
    except ValueError:
        return False
    return True


def _check_unique_ids(where: Path, cases: list[Case]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise InputError(where, f"duplicate case_id {case.case_id!r}")
        seen.add(case.case_id)
