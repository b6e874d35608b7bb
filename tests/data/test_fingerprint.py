"""The fingerprint of a small real dataset: values, and the cache keyed on the manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from medlens.core.errors import InputError
from medlens.data.dataset import Dataset, load_dataset
from medlens.data.fingerprint import compute_fingerprint, load_fingerprint
from medlens.data.importers import get_importer
from medlens.tasks.base import get_task


def _classification_part(dataset: Dataset) -> dict:
    return get_task("classification").fingerprint(dataset)


def test_values_on_real_pneumonia(pneumonia_dataset: Dataset, small_pneumonia_npz: Path) -> None:
    fp = compute_fingerprint(pneumonia_dataset, task_part=_classification_part)
    assert (fp["task"], fp["spatial_dims"], fp["modality"], fp["channels"]) == ("classification", 2, "DX", 1)
    assert fp["shape"] == {"median": [28, 28], "min": [28, 28], "max": [28, 28]}
    assert fp["spacing_median"] == [1.0, 1.0]
    assert fp["n_cases"] == {"train": 40, "val": 20, "test": 20, "all": 80}
    assert fp["n_patients"] == 80
    assert fp["class_names"] == ["normal", "pneumonia"]
    for split in ("train", "val", "test"):
        counts = Counter(int(c.target) for c in pneumonia_dataset.split(split))
        assert fp["class_counts"][split] == [counts[0], counts[1]]
    arrays = np.load(small_pneumonia_npz)
    for split in ("train", "val", "test"):
        assert fp["class_counts"][split] == np.bincount(arrays[f"{split}_labels"][:, 0], minlength=2).tolist()
    pixels = np.concatenate([arrays[f"{s}_images"].ravel() for s in ("train", "val", "test")]).astype(float)
    inten = fp["intensity"]
    assert inten["min"] >= pixels.min() and inten["max"] <= pixels.max()
    assert inten["mean"] == pytest.approx(pixels.mean(), rel=0.05)  # a pixel sample, not every pixel
    assert inten["std"] == pytest.approx(pixels.std(), rel=0.05)
    assert inten["p00_5"] <= inten["p99_5"]
    assert 2 < inten["n_unique"] <= 256
    assert fp["images_measured"] == 80


def test_3d_values_on_real_adrenal(small_adrenal_npz: Path, tmp_path: Path) -> None:
    ds = get_importer("medmnist")(small_adrenal_npz, tmp_path / "ds")
    fp = compute_fingerprint(ds, max_images=10, task_part=_classification_part)
    assert fp["spatial_dims"] == 3
    assert fp["shape"]["median"] == [28, 28, 28]
    assert fp["images_measured"] == 10
    assert sum(fp["class_counts"]["train"]) == 40


def test_the_shared_part_knows_no_task(pneumonia_dataset: Dataset) -> None:
    """Class counts are the classification task's part (a detector counts objects, not images); a fingerprint
    cached without the task's part is measured again when the task's part is asked for."""
    fp = compute_fingerprint(pneumonia_dataset)
    assert "class_counts" not in fp and fp["n_cases"]["all"] == 80
    with_task = compute_fingerprint(pneumonia_dataset, task_part=_classification_part)
    assert sum(with_task["class_counts"]["train"]) == 40
    assert compute_fingerprint(pneumonia_dataset)["class_counts"] == with_task["class_counts"]  # cached, a superset


def test_max_images_caps_reading(pneumonia_dataset: Dataset) -> None:
    assert compute_fingerprint(pneumonia_dataset, max_images=7)["images_measured"] == 7


def test_cache_reused_then_invalidated(pneumonia_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import medlens.io

    real_read = medlens.io.read_image
    first = compute_fingerprint(pneumonia_dataset)
    assert load_fingerprint(pneumonia_dataset.root) == first
    assert json.loads((pneumonia_dataset.root / "fingerprint.json").read_text()) == first

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached fingerprint should have been used")

    monkeypatch.setattr(medlens.io, "read_image", no_reading)
    assert compute_fingerprint(pneumonia_dataset) == first

    # change the manifest: the cache no longer applies and the images are read again
    manifest = pneumonia_dataset.root / "manifest.csv"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-5]))  # header + 75 cases
    with pytest.raises(AssertionError, match="cached"):
        compute_fingerprint(load_dataset(pneumonia_dataset.root))
    monkeypatch.setattr(medlens.io, "read_image", real_read)
    second = compute_fingerprint(load_dataset(pneumonia_dataset.root))
    assert second["n_cases"]["all"] == 75
    assert second["manifest_sha1"] != first["manifest_sha1"]


def test_dimension_mismatch_is_input_error(pneumonia_dataset: Dataset) -> None:
    spec_path = pneumonia_dataset.root / "dataset.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["spatial_dims"] = 3
    spec_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="2D image in a 3D dataset") as info:
        compute_fingerprint(load_dataset(pneumonia_dataset.root))
    assert info.value.path.suffix == ".png"


def test_no_fingerprint_yet(tmp_path: Path) -> None:
    assert load_fingerprint(tmp_path) is None
