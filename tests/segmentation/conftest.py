"""Fixtures for segmentation tests: a few real hippocampus cases, imported small.

Fixtures:
    hippocampus_root: ``MEDLENS_DATA/Task04_Hippocampus`` (skips when missing).
    hippocampus_case: (image, label) arrays ``(X, Y, Z)`` of the first real case.
    small_msd: a Decathlon folder in ``tmp_path`` holding the first ``n`` (default 8) real cases
        (factory: ``small_msd(n=8)``), linked, not copied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def hippocampus_root(data_root: Path) -> Path:
    root = data_root / "Task04_Hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"{root} is missing from MEDLENS_DATA")
    return root


@pytest.fixture(scope="session")
def hippocampus_case(hippocampus_root: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    entry = json.loads((hippocampus_root / "dataset.json").read_text())["training"][0]
    image = np.asarray(nib.load(str(hippocampus_root / entry["image"])).dataobj)
    label = np.asarray(nib.load(str(hippocampus_root / entry["label"])).dataobj).astype(np.uint8)
    return image, label


@pytest.fixture()
def small_msd(tmp_path: Path, hippocampus_root: Path) -> Callable[..., Path]:
    """Factory: a task folder with the first ``n`` real cases (symbolic links to the real files)."""

    def make(n: int = 8, name: str = "small_task") -> Path:
        raw = json.loads((hippocampus_root / "dataset.json").read_text())
        folder = tmp_path / name
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

    return make
