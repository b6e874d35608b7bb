"""Fixtures shared by the whole suite: the real data root and small real-data MedMNIST archives.

Real data is found through ``MEDLENS_DATA`` only (read by ``medlens.core.settings``); tests that need it
skip with a reason when it is unset. Nothing from the real data is copied into the repository: the small
archives below are built in each test's ``tmp_path`` from the first images of the real ones.

Fixtures:
    data_root: the ``MEDLENS_DATA`` folder (session); skips when unset or missing.
    medmnist_subset: ``medmnist_subset(name, n_train=40, n_val=20, n_test=20)`` -> dict of the first images
        and labels of ``MEDLENS_DATA/medmnist/NAME.npz`` per split (cached per session; copies returned,
        so a test may edit them, e.g. to reshape labels).
    write_npz: ``write_npz(path, arrays)`` writes a dict of arrays as an ``.npz`` and returns the path.
    small_pneumonia_npz: ``tmp_path/src/pneumoniamnist.npz`` with 40/20/20 real PneumoniaMNIST images
        (28x28 gray, labels (N, 1), both classes in every split).
    small_adrenal_npz: ``tmp_path/src/adrenalmnist3d.npz`` with 40/20/20 real AdrenalMNIST3D volumes
        (28^3, labels (N, 1)).
    pneumonia_dataset: ``small_pneumonia_npz`` imported with the MedMNIST importer into ``tmp_path/dataset``.

Every test also gets its own ``MEDLENS_HOME`` (autouse), so caches and downloads never reach the real home.

Torch runs one thread per test process unless ``OMP_NUM_THREADS`` says otherwise: the suite runs as
``pytest -n 2`` on a 2-core machine, where torch's default (a thread per core, per process) oversubscribes
the cores and its spinning OpenMP threads made the model tests about 4x slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from medlens.core.settings import get_settings

SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(autouse=True)
def _isolated_medlens_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MEDLENS_HOME at a temporary folder (a directory-level conftest may override this)."""
    monkeypatch.setenv("MEDLENS_HOME", str(tmp_path_factory.getbasetemp() / "medlens_home"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root from MEDLENS_DATA; skips the test when it is unset or missing."""
    root = get_settings().data_root
    if root is None:
        pytest.skip("MEDLENS_DATA is not set (point it at the shared real data, e.g. ../shared/data)")
    if not root.is_dir():
        pytest.skip(f"MEDLENS_DATA={root} is not a folder")
    return root


@cache
def _load_subset(path: Path, n_train: int, n_val: int, n_test: int) -> dict[str, np.ndarray]:
    counts = {"train": n_train, "val": n_val, "test": n_test}
    with np.load(path) as data:
        return {
            f"{s}_{k}": np.ascontiguousarray(data[f"{s}_{k}"][: counts[s]])
            for s in SPLIT_NAMES
            for k in ("images", "labels")
        }


@pytest.fixture(scope="session")
def medmnist_subset(data_root: Path) -> Callable[..., dict[str, np.ndarray]]:
    """Factory: the first images and labels of a real MedMNIST archive, per split (copies)."""

    def subset(name: str, n_train: int = 40, n_val: int = 20, n_test: int = 20) -> dict[str, np.ndarray]:
        path = data_root / "medmnist" / f"{name}.npz"
        if not path.is_file():
            pytest.skip(f"{path} is missing from MEDLENS_DATA")
        return {k: v.copy() for k, v in _load_subset(path, n_train, n_val, n_test).items()}

    return subset


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="session")
def write_npz() -> Callable[[Path, dict[str, np.ndarray]], Path]:
    """``write_npz(path, arrays)``: save ``arrays`` as a compressed ``.npz`` at ``path`` (parents created)."""
    return _write_npz


@pytest.fixture()
def small_pneumonia_npz(tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """A real 40/20/20-image PneumoniaMNIST archive named ``pneumoniamnist.npz`` (so the catalog knows it)."""
    return _write_npz(tmp_path / "src" / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist"))


@pytest.fixture()
def small_adrenal_npz(tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """A real 40/20/20-volume AdrenalMNIST3D (28^3) archive named ``adrenalmnist3d.npz``."""
    return _write_npz(tmp_path / "src" / "adrenalmnist3d.npz", medmnist_subset("adrenalmnist3d"))


@pytest.fixture()
def pneumonia_dataset(tmp_path: Path, small_pneumonia_npz: Path):
    """``small_pneumonia_npz`` imported into ``tmp_path/dataset`` (a ``medlens.data.dataset.Dataset``)."""
    from medlens.data.importers import get_importer

    return get_importer("medmnist")(small_pneumonia_npz, tmp_path / "dataset")
