"""``medlens deid`` on the command line: in-process through main(), and once as the installed script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medlens.cli.main import main


def test_cli_in_process(dicom_root: Path, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, mapping = tmp_path / "out", tmp_path / "map.csv"
    code = main(["deid", str(dicom_root / "deid_data"), str(out), "--key", str(key_file), "--workers", "1",
                 "--reject-burned-in", "--keep-dates-shifted", "--mapping", str(mapping)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr()
    assert "5 input files: 0 written, 4 quarantined, 1 skipped" in printed.out
    assert "LICENSE: not DICOM" in printed.err
    assert mapping.is_file() and len(list((tmp_path / "out-quarantine").rglob("*.dcm"))) == 4


def test_cli_bad_input_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["deid", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    assert "input not found" in capsys.readouterr().err


@pytest.mark.integration
def test_installed_script(dicom_root: Path, key_file: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "medlens"
    args = ["deid", str(dicom_root / "pydicom_testdata"), str(tmp_path / "out"), "--key", str(key_file)]
    env = {**os.environ, "MEDLENS_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(script), *args, "--workers", "2"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and "written" in result.stdout
    assert "DICOMDIR media index" in result.stderr


def _interrupt_with(stop):
    def fake_deidentify(*args, **kwargs):
        stop()
        raise AssertionError("not interrupted")

    return fake_deidentify


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # a real SIGTERM to this process; its handler raises
    time.sleep(10)


@pytest.mark.parametrize(("stop", "code"), [(_ctrl_c, 130), (_sigterm, 143)], ids=["ctrl-c", "sigterm"])
def test_cli_interrupted_exit_code_and_one_line(
    stop, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import medlens.deid

    def no_handler_in_main(signum, frame):
        raise RuntimeError("main() installed no SIGTERM handler")  # rather than killing pytest

    monkeypatch.setattr(medlens.deid, "deidentify", _interrupt_with(stop))
    original = signal.signal(signal.SIGTERM, no_handler_in_main)
    try:
        assert main(["deid", str(tmp_path), str(tmp_path / "out"), "--workers", "1"]) == code
        assert signal.getsignal(signal.SIGTERM) is no_handler_in_main  # main() puts back the handler it found
    finally:
        signal.signal(signal.SIGTERM, original)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "same command" in lines[0], lines


def test_cli_help_names_the_path_rules(capsys: pytest.CaptureFixture) -> None:
    assert main(["deid", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite-mapping" in text and ".medlens-deid.json" in text
