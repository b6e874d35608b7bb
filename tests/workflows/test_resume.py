"""A run killed mid-training resumes from its last checkpoint: the epochs done before the kill are not trained
again, the remaining ones are trained once, and the run ends with its bundle (see ``interrupt.py``).

Checkpoints, resume and the budget are the shared engine's (``training/fitting.py``), the same for every task:
classification and a 2-fold segmentation run prove them (a detection resume took 30 s more and proved nothing
the engine does not already show).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from interrupt import kill_then_resume
from medlens.cli.main import main

pytestmark = pytest.mark.integration


def test_classification_resumes_where_it_was_killed(tiny: list[str], pneumonia_run: Path, tmp_path: Path) -> None:
    args = [
        str(pneumonia_run / "ds"),
        *tiny,
        "--set",
        "train.max_epochs=6",
        "--set",
        "train.early_stopping_patience=null",
    ]
    resumed = kill_then_resume(args, tmp_path / "run", "seed_0", epochs=6)
    steps_per_epoch = 80 // 16  # 80 training images, batches of 16
    assert resumed.summary["steps"] == 6 * steps_per_epoch  # every step of the run, counted across both sessions
    assert len(resumed.resumed_epochs) < 6


def test_segmentation_folds_resume_as_folds(small_msd, segmentation_tiny: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 2-fold run killed in fold 0 resumes as a 2-fold run (``--folds`` is not repeated): fold 0 continues from
    its checkpoint, fold 1 is trained, the bundle holds both."""
    dataset = tmp_path / "ds"
    assert main(["-q", "import", "msd", str(small_msd(6)), "--out", str(dataset), "--test-fraction", "0.2"]) == 0
    quick = [
        "--set", "data.input_size=[16,16,16]", "--set", "segmentation.iterations_per_epoch=3",
        "--set", "train.max_epochs=4", "--set", "train.early_stopping_patience=null",
        "--set", "segmentation.check_largest_component=false",
    ]  # fmt: skip
    args = [str(dataset), "--folds", "2", *segmentation_tiny, *quick]
    resumed = kill_then_resume(args, tmp_path / "run", "fold_0", epochs=4)
    assert resumed.summary["steps"] == 4 * 3
    assert json.loads((tmp_path / "run" / "fold_1" / "summary.json").read_text())["epochs"] == 4
    bundle = yaml.safe_load((tmp_path / "run" / "bundle" / "bundle.yaml").read_text())
    assert len(bundle["members"]) == 2
    assert yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["folds"] == 2


def _copy_run(pneumonia_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared run and its dataset, the run's record pointing at the copied dataset."""
    import shutil

    ds, run = tmp_path / "ds", tmp_path / "run"
    shutil.copytree(pneumonia_run / "ds", ds)
    shutil.copytree(pneumonia_run / "run", run)
    record = yaml.safe_load((run / "run.yaml").read_text())
    (run / "run.yaml").write_text(yaml.safe_dump(record | {"dataset": str(ds.resolve())}))
    return ds, run


def test_resume_refuses_another_dataset_a_changed_manifest_and_new_settings(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, run = _copy_run(pneumonia_run, tmp_path)
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert main(["train", str(pneumonia_run / "ds"), "--out", str(run), "--resume"]) == 1
    assert "is not this run's dataset" in capsys.readouterr().err
    assert main(["train", str(ds), "--out", str(run), "--resume", "--set", "optim.lr=0.1"]) == 1
    assert "cannot change the plan of a run being resumed" in capsys.readouterr().err
    assert main(["train", str(ds), "--out", str(run), "--resume", "--budget", "1m"]) == 1
    assert "cannot change the plan" in capsys.readouterr().err
    manifest = ds / "manifest.csv"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-1]))  # one case fewer
    assert main(["train", str(ds), "--out", str(run), "--resume"]) == 1
    assert "changed since this run started" in capsys.readouterr().err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before  # nothing touched
    assert main(["train", str(ds), "--out", str(tmp_path / "nothing"), "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
