"""``medlens import table`` through the command line: each option changes what is imported (sequence tables of
visits from the real OASIS-2 file, and image tables of real PneumoniaMNIST pictures)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medlens.cli.main import main

OASIS = "oasis2/oasis_longitudinal.csv"
SEQUENCE = ["--task", "sequence", "--subject", "Subject ID", "--order", "Visit", "--target", "Group"]


def _splits(dataset: Path) -> dict[str, str]:
    with open(dataset / "manifest.csv", newline="", encoding="utf-8") as handle:
        return {r["case_id"]: r["split"] for r in csv.DictReader(handle)}


def test_sequence_options_exclude_positive_fractions_seed_and_overwrite(real_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = str(real_data(OASIS))
    first, other = tmp_path / "a", tmp_path / "b"
    options = ["--exclude", "MMSE", "--positive", "Demented", "--val-fraction", "0.25", "--test-fraction", "0.25"]
    assert main(["-q", "import", "table", table, *SEQUENCE, *options, "--seed", "1", "-o", str(first)]) == 0
    spec = yaml.safe_load((first / "dataset.yaml").read_text())
    assert json.loads(spec["source"]["excluded"])["MMSE"] == "excluded by the user"
    assert json.loads(spec["source"]["positive"]) == ["Demented"]
    splits = _splits(first)
    shares = {s: sum(v == s for v in splits.values()) / len(splits) for s in ("val", "test")}
    assert all(0.2 <= share <= 0.3 for share in shares.values()), shares  # 25% each, stratified by outcome
    assert main(["-q", "import", "table", table, *SEQUENCE, *options, "--seed", "2", "-o", str(other)]) == 0
    assert _splits(other) != splits  # another seed, another split of the same subjects
    assert set(_splits(other)) == set(splits)

    # an existing dataset is replaced only with --overwrite
    assert main(["-q", "import", "table", table, *SEQUENCE, "--seed", "2", "-o", str(first)]) != 0
    assert _splits(first) == splits
    assert (
        main(["-q", "import", "table", table, *SEQUENCE, *options, "--seed", "2", "-o", str(first), "--overwrite"]) == 0
    )
    assert _splits(first) == _splits(other)


def test_image_and_patient_columns_name_where_images_and_patients_are(
    tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]
) -> None:
    arrays = medmnist_subset("pneumoniamnist", 12, 0, 0)
    source = tmp_path / "source"
    source.mkdir()
    rows = []
    for i, (picture, label) in enumerate(zip(arrays["train_images"], arrays["train_labels"], strict=True)):
        name = f"x{i:02d}.png"
        Image.fromarray(picture).save(source / name)
        rows.append({"file": name, "who": f"p{i // 2}", "label": str(int(label[0]))})  # two images per patient
    with open(source / "t.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "who", "label"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "ds"
    args = ["-q", "import", "table", str(source / "t.csv"), "-o", str(out)]
    assert main(args) != 0 and not out.exists()  # the default columns (image, patient_id) are not in this table
    assert main([*args, "--image-column", "file", "--patient-column", "who"]) == 0
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        manifest = list(csv.DictReader(handle))
    assert len(manifest) == 12
    split_of_patient: dict[str, set[str]] = {}
    for case in manifest:
        split_of_patient.setdefault(case["patient_id"], set()).add(case["split"])
    assert len(split_of_patient) == 6 and all(len(s) == 1 for s in split_of_patient.values())  # split by patient


pytestmark = pytest.mark.integration


@pytest.mark.parametrize("task", ["segmentation", "detection", "multilabel"])
def test_a_task_whose_labels_are_not_a_table_column_is_refused(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.csv"
    table.write_text("image,patient_id,label\na.png,p0,0\n", encoding="utf-8")
    out = tmp_path / "ds"
    assert main(["-q", "import", "table", str(table), "--task", task, "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert f"--task '{task}'" in err and "classification, regression, sequence" in err and not out.exists()
