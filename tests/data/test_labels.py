"""Few labels (``import --label-fraction``): stratified, patient-level subsets of the training labels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medlens.core.errors import ConfigError
from medlens.data.dataset import UNLABELED, Case, load_dataset
from medlens.data.labels import keep_label_fraction


def _cases() -> list[Case]:
    """60 training patients (two images each; 45 of class 0, 15 of class 1), 10 val and 10 test cases."""
    cases = [
        Case(f"t{p}_{k}", f"p{p}", [f"t{p}_{k}.png"], "1" if p % 4 == 0 else "0", "train")
        for p in range(60)
        for k in range(2)
    ]
    cases += [Case(f"v{i}", f"v{i}", [f"v{i}.png"], str(i % 2), "val") for i in range(10)]
    cases += [Case(f"s{i}", f"s{i}", [f"s{i}.png"], str(i % 2), "test") for i in range(10)]
    return cases


def test_fraction_is_stratified_by_class_and_keeps_patients_whole() -> None:
    cases = _cases()
    out = keep_label_fraction(cases, 0.2, seed=3)
    kept = [c for c in out if c.split == "train"]
    # 20% of the 45 class-0 and of the 15 class-1 patients, two images each
    assert Counter(c.target for c in kept) == {"0": 2 * 9, "1": 2 * 3}
    for patient in {c.patient_id for c in out if c.split in ("train", UNLABELED)}:
        assert len({c.split for c in out if c.patient_id == patient}) == 1  # both images labelled, or neither
    assert all(c.target == "" for c in out if c.split == UNLABELED)
    assert [c for c in out if c.split in ("val", "test")] == [c for c in cases if c.split in ("val", "test")]
    assert [c.case_id for c in out] == [c.case_id for c in cases]  # nothing dropped, order kept
    other = keep_label_fraction(cases, 0.2, seed=4)
    assert {c.case_id for c in other if c.split == "train"} != {c.case_id for c in kept}  # the seed matters
    assert keep_label_fraction(cases, 0.2, seed=3) == out  # and repeats


def test_tiny_fraction_keeps_one_patient_per_class() -> None:
    out = keep_label_fraction(_cases(), 0.001, seed=0)
    kept = [c for c in out if c.split == "train"]
    assert sorted({c.target for c in kept}) == ["0", "1"]
    assert len({c.patient_id for c in kept}) == 2


def test_fraction_outside_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="label-fraction"):
        keep_label_fraction(_cases(), 0.0)
    assert keep_label_fraction(_cases(), 1.0) == _cases()


def test_medmnist_import_keeps_a_share_and_training_skips_the_rest(small_pneumonia_npz: Path, tmp_path: Path) -> None:
    from medlens.data.importers import get_importer
    from medlens.tasks.classification import class_counts
    from medlens.training.members import plan_members

    full = get_importer("medmnist")(small_pneumonia_npz, tmp_path / "full")
    few = get_importer("medmnist")(small_pneumonia_npz, tmp_path / "few", label_fraction=0.25, seed=1)
    few = load_dataset(few.root)  # as later stages read it
    assert few.spec.labels is not None and (few.spec.labels.fraction, few.spec.labels.seed) == (0.25, 1)
    assert "labels" not in (full.root / "dataset.yaml").read_text()  # a full import writes no labels key
    assert len(few.split("train")) == 10 and len(few.unlabeled()) == 30
    for split in ("val", "test"):
        assert few.split(split) == full.split(split)
    full_counts, few_counts = class_counts(full, "train"), class_counts(few, "train")
    assert all(c >= 1 for c in few_counts) and sum(few_counts) == 10
    assert abs(few_counts[0] / 10 - full_counts[0] / 40) <= 0.1  # the class balance of the full training set
    members = plan_members(few, seeds=1)
    assert {c.case_id for c in members[0].train} == {c.case_id for c in few.split("train")}
    assert not {c.case_id for c in few.unlabeled()} & {c.case_id for c in few.split("all")}
    assert (few.root / "manifest.csv").read_text().count(",,unlabeled") == 30  # empty target, split 'unlabeled'


def test_cli_folder_import_takes_label_fraction(tmp_path: Path, small_pneumonia_npz: Path) -> None:
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from medlens.cli.main import app

    arrays = np.load(small_pneumonia_npz)
    for i, (image, label) in enumerate(zip(arrays["train_images"], arrays["train_labels"][:, 0], strict=True)):
        folder = tmp_path / "pics" / ("pneumonia" if label else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"p{i:03d}.png")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["import", "folder", str(tmp_path / "pics"), "--out", str(out), "--label-fraction", "0.5", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    train, unlabeled = len(dataset.split("train")), len(dataset.unlabeled())
    assert unlabeled > 0 and abs(train - unlabeled) <= 2  # half of the training patients, per class
    assert dataset.spec.labels is not None and dataset.spec.labels.seed == 2


@pytest.mark.parametrize("kind", ["csv", "voc", "coco", "yolo", "msd", "pairs"])
def test_every_importer_takes_label_fraction(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """import csv/voc/coco/yolo/msd/pairs --label-fraction: the same val and test as a full import, the training
    cases split into labelled and unlabeled, the fraction and seed recorded."""
    from import_inputs import importer_for
    from medlens.cli.main import main

    importer = importer_for(kind, tmp_path, request)
    assert main(importer.args(tmp_path / "full", "--seed", "1")) == 0
    assert main(importer.args(tmp_path / "few", "--label-fraction", "0.5", "--seed", "1")) == 0
    full, few = load_dataset(tmp_path / "full"), load_dataset(tmp_path / "few")
    assert few.spec.labels is not None and few.spec.labels.fraction == 0.5
    for split in ("val", "test"):
        assert [c.case_id for c in few.split(split)] == [c.case_id for c in full.split(split)]
    assert len(few.split("train")) + len(few.unlabeled()) == len(full.split("train"))
    assert 1 <= len(few.split("train")) <= len(full.split("train"))


def test_dicomweb_import_lists_label_fraction(capsys: pytest.CaptureFixture[str]) -> None:
    """import dicomweb --label-fraction is offered (its effect is the shared apply_label_fraction tested above; a
    DICOMweb server is needed to run the importer itself)."""
    from medlens.cli.main import main

    main(["import", "dicomweb", "--help"])
    assert "--label-fraction" in capsys.readouterr().out
