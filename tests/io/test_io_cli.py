"""``medlens info`` and ``medlens convert``, in-process and once through the installed console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlens.cli.main import main
from medlens.core.image import Image


def test_info_on_series(mr_series_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(mr_series_dir)]) == 0
    out = capsys.readouterr().out
    assert "SAG MPRAGE" in out and "256 x 256 x 192" in out and "MR" in out and "PIR" in out


def test_info_lists_several_series(testdata: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(testdata / "dicomdirtests" / "DICOMDIR")]) == 0
    out = capsys.readouterr().out
    assert "Routine Brain" in out and "--series" in out


def test_convert_series_to_nifti(mr_volume: Image, mr_series_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mr.nii.gz"
    assert main(["convert", str(mr_series_dir), str(out)]) == 0
    ref = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(ref.dataobj), mr_volume.array[0])
    assert main(["convert", str(mr_series_dir), str(out)]) == 1  # exists, no --overwrite


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.dcm" in err[0]


@pytest.mark.integration
def test_console_script(testdata: Path, tmp_path: Path, medlens_script: Path) -> None:
    script = medlens_script
    out = tmp_path / "ct.png"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [str(script), "convert", str(testdata / "CT_small.dcm"), str(out), "--window", "40,80"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
    info = subprocess.run([str(script), "info", str(out)], capture_output=True, text=True, env=env)
    assert info.returncode == 0 and "png" in info.stdout
