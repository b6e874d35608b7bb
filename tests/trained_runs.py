"""Trained runs shared by every test that needs one: each is trained once per test session (per xdist worker).

Each fixture returns a work folder holding the dataset (``ds``), the run (``run``) and the raw data it was
imported from. Do not change these folders: write into ``tmp_path`` (copy what you must edit).

``tests/conftest.py`` sends every test that uses one of these fixtures to the same worker under
``pytest -n 2 --dist loadgroup`` (an ``xdist_group`` marker named after the run, added from the fixtures a test
uses; see ``RUN_GROUPS``), so each run is trained once per session.

Runs:
    pneumonia_run: 80/40/40 real PneumoniaMNIST 28x28 images, 2 seeds of 2 epochs, quarter-width ResNet.
    hippo_run: 6 real Task04_Hippocampus cases (4 train, 1 val, 1 test), one seed, 3 epochs of 10 patches of 32^3.
    bccd_run: 4 train / 2 val real BCCD images at 96x128, one seed, 12 epochs: enough to find cells.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main

TINY = [
    "--set",
    "train.max_epochs=2",
    "--set",
    "train.budget_minutes=null",
    "--set",
    "train.batch_size=16",
    "--set",
    "model.kwargs.widen_factor=0.25",
]

SEGMENTATION_TINY = [
    "--set", "segmentation.iterations_per_epoch=10",
    "--set", "train.max_epochs=3",
    "--set", "train.batch_size=2",
    "--set", "data.input_size=[32,32,32]",
    "--set", "train.budget_minutes=null",
]  # fmt: skip

DETECTION_RUN = [
    "--set", "data.input_size=[96,128]",
    "--set", "detection.train_short_sides=[96]",
    "--set", "train.max_epochs=12",
    "--set", "train.budget_minutes=null",
    "--set", "train.batch_size=2",
    "--set", "train.early_stopping_patience=null",
]  # fmt: skip

RUN_GROUPS = {"pneumonia_run": "classification_run", "hippo_run": "segmentation_run", "bccd_run": "detection_run"}


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Plan overrides that make classification training take seconds: 2 epochs, batch 16, quarter width."""
    return list(TINY)


@pytest.fixture(scope="session")
def segmentation_tiny() -> list[str]:
    """Plan overrides for a segmentation run of seconds (3 epochs of 10 batches of two 32^3 patches)."""
    return list(SEGMENTATION_TINY)


@pytest.fixture(scope="session")
def pneumonia_run(
    tmp_path_factory: pytest.TempPathFactory,
    medmnist_subset: Callable[..., dict[str, np.ndarray]],
    write_npz: Callable[[Path, dict[str, np.ndarray]], Path],
) -> Path:
    """Import 80/40/40 real PneumoniaMNIST images, plan, and train 2 seeds of 2 epochs; returns the work folder."""
    work = tmp_path_factory.mktemp("pneumonia_run")
    npz = write_npz(work / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist", 80, 40, 40))
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(work / "ds")]) == 0
    assert main(["-q", "plan", str(work / "ds")]) == 0
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), "--seeds", "2", *TINY]) == 0
    return work


@pytest.fixture(scope="session")
def hippo_run(tmp_path_factory: pytest.TempPathFactory, hippocampus_root: Path) -> Path:
    """6 real hippocampus cases (``msd``, linked), imported (``ds``), planned and trained (``run``)."""
    from suite_support import build_msd

    work = tmp_path_factory.mktemp("hippo_run")
    msd = build_msd(hippocampus_root, work / "msd", 6)
    assert main(["-q", "import", "msd", str(msd), "--out", str(work / "ds")]) == 0
    assert main(["-q", "plan", str(work / "ds")]) == 0
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), *SEGMENTATION_TINY]) == 0
    return work


@pytest.fixture(scope="session")
def bccd_run(tmp_path_factory: pytest.TempPathFactory, bccd_root: Path) -> Path:
    """4 train / 2 val real BCCD images (``voc``), imported (``ds``) and trained for 12 epochs (``run``)."""
    from suite_support import build_voc

    work = tmp_path_factory.mktemp("bccd_run")
    voc = build_voc(bccd_root, work / "voc", 4, 2)
    assert main(["-q", "import", "voc", str(voc), "--out", str(work / "ds")]) == 0
    assert main(["-q", "train", str(work / "ds"), "--out", str(work / "run"), *DETECTION_RUN]) == 0
    return work
