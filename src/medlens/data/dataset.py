"""The on-disk dataset every importer writes and every later stage reads.

A dataset is a folder holding ``dataset.yaml`` (what the data is) and ``manifest.csv`` (one row per case)::

    name: pneumoniamnist
    task: classification            # classification | multilabel | segmentation | detection
    spatial_dims: 2
    modality: XR
    channels: [gray]
    classes: [normal, pneumonia]    # class names (label names for multilabel, foreground+background for segmentation)
    manifest: manifest.csv

Manifest columns: ``case_id``, ``patient_id``, ``image`` (path relative to the dataset folder; several
channels joined by ``;``), ``target`` (class index; ``;``-joined 0/1 flags for multilabel; a mask path;
a boxes JSON path), ``split`` (``train``, ``val``, ``test`` or empty when not yet split).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import atomic_file, write_text_atomic

Task = Literal["classification", "multilabel", "segmentation", "detection"]
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("case_id", "patient_id", "image", "target", "split")


class DatasetSpec(BaseModel):
    """The contents of ``dataset.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task: Task
    spatial_dims: Literal[2, 3]
    modality: str = "OT"
    channels: list[str] = Field(default_factory=lambda: ["gray"])
    classes: list[str]
    manifest: str = "manifest.csv"
    source: dict[str, str] = Field(default_factory=dict)


@dataclass
class Case:
    """One row of the manifest."""

    case_id: str
    patient_id: str
    image: list[str]
    target: str
    split: str = ""

    def to_row(self) -> dict[str, str]:
        return {
            "case_id": self.case_id,
            "patient_id": self.patient_id,
            "image": ";".join(self.image),
            "target": self.target,
            "split": self.split,
        }


@dataclass
class Dataset:
    """A dataset folder: its spec and its cases."""

    root: Path
    spec: DatasetSpec
    cases: list[Case] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    def split(self, name: str) -> list[Case]:
        """The cases of one split (``all`` for every case)."""
        if name == "all":
            return list(self.cases)
        if name not in SPLITS:
            raise ConfigError("split", f"unknown split {name!r} (choose from train, val, test, all)")
        return [c for c in self.cases if c.split == name]

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
    """Write ``dataset.yaml`` and the manifest into ``root`` (atomically, file by file)."""
    root = Path(root)
    _check_unique_ids(root, cases)
    with atomic_file(root / spec.manifest, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)  # type: ignore[arg-type]
        writer.writeheader()
        for case in cases:
            writer.writerow(case.to_row())
    write_text_atomic(root / "dataset.yaml", yaml.safe_dump(spec.model_dump(), sort_keys=False))
    return Dataset(root=root, spec=spec, cases=cases)


def load_dataset(root: str | Path) -> Dataset:
    """Read a dataset folder, validating ``dataset.yaml`` and the manifest."""
    root = Path(root)
    spec_path = root / "dataset.yaml"
    if not spec_path.is_file():
        raise InputError(root, "not a medlens dataset (no dataset.yaml); create one with 'medlens import'")
    try:
        raw = yaml.safe_load(spec_path.read_text())
        spec = DatasetSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise InputError(spec_path, f"not valid YAML ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{spec_path}: {key}", first["msg"]) from None
    manifest = root / spec.manifest
    if not manifest.is_file():
        raise InputError(manifest, "manifest missing")
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise InputError(manifest, f"manifest lacks column(s) {', '.join(sorted(missing))}")
        cases = [
            Case(
                case_id=row["case_id"],
                patient_id=row["patient_id"] or row["case_id"],
                image=[p for p in row["image"].split(";") if p],
                target=row["target"],
                split=row["split"] or "",
            )
            for row in reader
        ]
    if not cases:
        raise InputError(manifest, "manifest has no cases")
    _check_unique_ids(manifest, cases)
    return Dataset(root=root, spec=spec, cases=cases)


def _check_unique_ids(where: Path, cases: list[Case]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise InputError(where, f"duplicate case_id {case.case_id!r}")
        seen.add(case.case_id)
