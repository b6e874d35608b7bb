"""Small real detection data: a few BCCD images in Pascal VOC, COCO and YOLO layouts, built in tmp folders.

Fixtures:
    bccd_root: ``MEDLENS_DATA/BCCD`` (skips when absent).
    voc_tiny: ``voc_tiny(n_train=6, n_val=3)`` -> a VOC folder with the first BCCD images of each split list.
    tiny_dataset: a VOC-imported dataset of 6 train and 3 val BCCD images (session-wide, do not edit).
    tiny_plan_overrides: ``--set`` values for a fast plan (96x128 input, 1 epoch, no budget).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from medlens.data.dataset import Dataset

TINY_OVERRIDES = [
    "data.input_size=[96,128]",
    "detection.train_short_sides=[96]",
    "train.max_epochs=1",
    "train.budget_minutes=null",
    "train.batch_size=3",
]


@pytest.fixture(scope="session")
def bccd_root(data_root: Path) -> Path:
    root = data_root / "BCCD"
    if not (root / "Annotations").is_dir():
        pytest.skip(f"{root} holds no BCCD Pascal VOC data")
    return root


def _build_voc(source: Path, target: Path, n_train: int, n_val: int) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        names = (source / "ImageSets/Main" / f"{split}.txt").read_text().split()[:n]
        (target / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            shutil.copy(source / "Annotations" / f"{name}.xml", target / "Annotations")
            shutil.copy(source / "JPEGImages" / f"{name}.jpg", target / "JPEGImages")
    return target


@pytest.fixture
def voc_tiny(bccd_root: Path, tmp_path: Path) -> Callable[..., Path]:
    def build(n_train: int = 6, n_val: int = 3) -> Path:
        return _build_voc(bccd_root, tmp_path / "voc", n_train, n_val)

    return build


@pytest.fixture(scope="session")
def tiny_dataset(bccd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from medlens.data.importers import get_importer

    root = tmp_path_factory.mktemp("bccd_tiny")
    voc = _build_voc(bccd_root, root / "voc", 6, 3)
    return get_importer("voc")(voc, root / "dataset")


@pytest.fixture(scope="session")
def tiny_plan_overrides() -> list[str]:
    return list(TINY_OVERRIDES)
