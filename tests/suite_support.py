"""Helpers the suite's modules share (importable by name: ``tests/`` is on the path). They live here and not in
``conftest.py`` because ``from conftest import ...`` finds whichever ``conftest`` module was imported first when
folders have their own (``tests/pacs/conftest.py`` and this folder's both load as ``conftest``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when the suite runs in continuous integration (``CI`` set to true, 1 or yes)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Missing data or a missing checking tool: a failure in CI (``CI=true``), a skip with the reason elsewhere.

    In CI a test that cannot run is not evidence of anything, so it must not pass as a silent skip.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: missing data or tools fail the run)", pytrace=False)
    pytest.skip(reason)


def build_msd(hippocampus_root: Path, folder: Path, n: int) -> Path:
    """A Decathlon folder holding the first ``n`` real cases (symbolic links to the real files)."""
    raw = json.loads((hippocampus_root / "dataset.json").read_text())
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    raw["training"] = raw["training"][:n]
    for entry in raw["training"]:
        for key in ("image", "label"):
            target = folder / entry[key]
            if not target.exists():
                os.symlink((hippocampus_root / entry[key]).resolve(), target)
    raw["numTraining"] = n
    (folder / "dataset.json").write_text(json.dumps(raw))
    return folder


def build_voc(source: Path, target: Path, n_train: int, n_val: int) -> Path:
    """A VOC folder with the first ``n_train`` / ``n_val`` BCCD images of each split list (copies)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        names = (source / "ImageSets/Main" / f"{split}.txt").read_text().split()[:n]
        (target / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            shutil.copy(source / "Annotations" / f"{name}.xml", target / "Annotations")
            shutil.copy(source / "JPEGImages" / f"{name}.jpg", target / "JPEGImages")
    return target


def tool(name: str, package: str) -> str:
    """The path of a checking tool."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (Debian {package}; run 'make system-packages')")
    assert found is not None
    return found
