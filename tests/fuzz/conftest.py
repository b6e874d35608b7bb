"""Fixtures of the fuzz corpus: the real data it is built from, and the small trained runs its commands need.

Trained once per session (a few seconds each):
    fuzz_sources: :class:`corpus.Sources` over ``MEDLENS_DATA`` (skips when unset, as the rest of the suite does).
    small_dataset: 24/8/8 real PneumoniaMNIST images imported with ``medlens import medmnist`` and measured.
    fuzz_plan: the plan ``medlens plan`` writes for it.
    pneumonia_run: a run on it: 1 epoch, quarter-width ResNet (for predict, evaluate, export, resume).
    hippocampus_run: a 3D segmentation run on six real Hippocampus cases, 1 epoch of 2 iterations.

Tests that use them are grouped (``xdist_group("fuzz")``) so that a parallel run trains them once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fuzz.corpus import TINY, Sources
from medlens.cli.main import main
from medlens.core.settings import get_settings


@pytest.fixture(scope="session")
def _fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MEDLENS_HOME for the session fixtures (each test gets its own through the suite's autouse fixture)."""
    home = tmp_path_factory.mktemp("fuzz_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDLENS_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def fuzz_sources() -> Sources:
    root = get_settings().data_root
    if root is None or not root.is_dir():
        pytest.skip("MEDLENS_DATA is not set to the shared real data (e.g. ../shared/data)")
    return Sources(root)


def _ok(argv: list[str]) -> None:
    code = main(["-q", *argv])
    if code != 0:
        raise RuntimeError(f"medlens {' '.join(argv)} exited with {code}")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, fuzz_sources: Sources, _fuzz_home: Path) -> Path:
    """24/8/8 real PneumoniaMNIST images imported and measured (fingerprint.json): what the run is trained on and
    the dataset, plan and ``--set`` mutations edit (small, so that copying it and training on it take little time)."""
    work = tmp_path_factory.mktemp("fuzz_small")
    np.savez_compressed(work / "pneumoniamnist.npz", **fuzz_sources.pneumonia)
    _ok(["import", "medmnist", str(work / "pneumoniamnist.npz"), "--out", str(work / "ds")])
    _ok(["plan", str(work / "ds")])
    (work / "ds" / "plan.yaml").rename(work / "plan.yaml")  # the dataset itself stays unplanned
    return work / "ds"


@pytest.fixture(scope="session")
def fuzz_plan(small_dataset: Path) -> str:
    """The text of the plan.yaml ``medlens plan`` wrote for ``small_dataset``."""
    return (small_dataset.parent / "plan.yaml").read_text()


@pytest.fixture(scope="session")
def pneumonia_run(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path, _fuzz_home: Path) -> Path:
    run = tmp_path_factory.mktemp("fuzz_pneumonia") / "run"
    _ok(["train", str(small_dataset), "--out", str(run), *TINY])
    return run


@pytest.fixture(scope="session")
def hippocampus_run(tmp_path_factory: pytest.TempPathFactory, fuzz_sources: Sources, _fuzz_home: Path) -> Path:
    work = tmp_path_factory.mktemp("fuzz_hippocampus")
    task = work / "task"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    training = []
    for case_id, image, label in fuzz_sources.hippocampus:
        (task / "imagesTr" / f"{case_id}.nii.gz").write_bytes(image)
        (task / "labelsTr" / f"{case_id}.nii.gz").write_bytes(label)
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    spec = {"name": "Hippocampus", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}
    (task / "dataset.json").write_text(json.dumps(spec | {"modality": {"0": "MRI"}, "training": training}))
    _ok(["import", "msd", str(task), "--out", str(work / "ds"), "--val-fraction", "0.2", "--test-fraction", "0.2"])
    settings = ["--set", "train.max_epochs=1", "--set", "train.budget_minutes=null", "--set", "train.explain_images=0"]
    small = ["--set", "segmentation.iterations_per_epoch=2", "--set", "segmentation.filters=[4,8,16,32]"]
    _ok(["train", str(work / "ds"), "--out", str(work / "run"), *settings, *small])
    return work / "run"
