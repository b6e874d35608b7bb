"""Trained runs shared by the tests that need one: each is trained once per test session (per xdist worker).

Tests that use the same run are sent to the same worker (``pytest -n 2 --dist loadgroup``) by the
``xdist_group`` marker that ``tests/conftest.py`` adds from the fixtures a test uses.
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


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Plan overrides that make training take seconds: 2 epochs, batch 16, quarter-width network."""
    return list(TINY)


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
