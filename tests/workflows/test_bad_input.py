"""Bad input ends with one line naming the file or key, a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medlens.cli.main import main


def _fails_cleanly(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("medlens: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_corrupt_image_for_predict(pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.png"
    good = next((pneumonia_run / "ds" / "images").glob("test_*.png")).read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    _fails_cleanly(["predict", str(pneumonia_run / "run"), str(bad), "--out", str(out)], capsys, "broken.png")
    assert not out.exists()


def test_unsupported_format(pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "notes.txt"
    odd.write_text("not an image")
    _fails_cleanly(["predict", str(pneumonia_run / "run"), str(odd), "--out", str(tmp_path / "o")], capsys, "notes.txt")
    assert not (tmp_path / "o").exists()


def test_wrong_dimensionality(
    pneumonia_run: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = next((data_root / "nifti").glob("*.nii*"))
    _fails_cleanly(
        ["predict", str(pneumonia_run / "run"), str(volume), "--out", str(tmp_path / "o")], capsys, "3D", "2D"
    )
    assert not (tmp_path / "o").exists()


def test_unknown_plan_key(pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _fails_cleanly(
        ["train", str(pneumonia_run / "ds"), "--out", str(run), "--set", "train.bach_size=8"],
        capsys,
        "train.bach_size",
    )
    assert not run.exists()


def test_bad_plan_value(pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _fails_cleanly(
        ["train", str(pneumonia_run / "ds"), "--out", str(run), "--set", "optim.lr=fast"], capsys, "optim.lr"
    )
    assert not run.exists()


def test_missing_class_in_training_split(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(pneumonia_run / "ds", ds)
    manifest = ds / "manifest.csv"
    lines = manifest.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if not (",train" in ln and ",0," in ln)]
    manifest.write_text("\n".join(kept) + "\n")
    (ds / "plan.yaml").unlink()
    _fails_cleanly(["train", str(ds), "--out", str(tmp_path / "run")], capsys, "normal", "manifest.csv")
    assert not (tmp_path / "run").exists()


def test_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_cleanly(["plan", str(tmp_path)], capsys, str(tmp_path), "dataset.yaml")


def test_existing_run_folder_is_not_overwritten(
    tiny: list[str], pneumonia_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in (pneumonia_run / "run").iterdir())
    _fails_cleanly(
        ["train", str(pneumonia_run / "ds"), "--out", str(pneumonia_run / "run"), *tiny], capsys, "not empty"
    )
    assert sorted(p.name for p in (pneumonia_run / "run").iterdir()) == before


def test_debug_shows_traceback(tmp_path: Path, medlens_script: Path) -> None:
    result = subprocess.run(
        [str(medlens_script), "--debug", "plan", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
    plain = subprocess.run(
        [str(medlens_script), "plan", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "dataset.yaml" in plain.stderr
