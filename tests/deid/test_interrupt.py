"""Ctrl-C and SIGTERM during the real ``medlens deid``: exit 130/143, one line, only whole files, and the same
command run again finishes the rest.

The command runs as a subprocess in its own process group, on copies of a real 192-slice MR series, and the
signal is sent once some files are written: to the whole group as a terminal's Ctrl-C does, or to the main
process alone as ``kill PID`` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from medlens.deid.pseudonyms import Pseudonymizer
from medlens.deid.worker import output_relpath

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def series(dicom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("series") / "in"
    src.mkdir()
    for path in sorted((dicom_root / "sag_anon_mr_t1_series").glob("*.dcm")):
        shutil.copy(path, src / path.name)
    return src


def _start(args: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "MEDLENS_HOME": str(home)}

    def default_ctrl_c() -> None:  # a child of a shell's background job would otherwise inherit "ignore SIGINT"
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    script = Path(sys.executable).parent / "medlens"
    return subprocess.Popen([str(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=default_ctrl_c)  # fmt: skip


def _group_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("signame", "target", "workers"),
    [
        ("SIGINT", "group", 2),
        ("SIGINT", "process", 1),
        ("SIGTERM", "process", 2),
        ("SIGTERM", "group", 2),
        ("SIGTERM", "process", 1),
    ],
)
def test_interrupted_deid_exits_cleanly_and_resumes(
    signame: str, target: str, workers: int, series: Path, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["deid", str(series), str(out), "--key", str(key_file), "--workers", str(workers)]
    proc = _start(args, tmp_path / "home")
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.dcm"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    signum = getattr(signal, signame)
    if target == "group":
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    try:
        _stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    alive = not _group_gone(proc.pid)
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not alive, "worker processes outlived the command"

    assert proc.returncode == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "same command" in lines[0], stderr
    everything = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in everything if p.name.endswith(".partial")]
    written = [p for p in everything if p.suffix == ".dcm"]
    assert 5 <= len(written) < 192
    for path in written:  # whole files only: every one reads to the end of its pixel data
        assert pydicom.dcmread(path).pixel_array.shape == (256, 256)

    resumed = subprocess.run(
        [str(Path(sys.executable).parent / "medlens"), *args],
        env={**os.environ, "MEDLENS_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(written)} already done by an earlier run" in resumed.stdout
    pseudo = Pseudonymizer(key_file.read_bytes().strip())
    expected = {output_relpath(pseudo, p.name) for p in series.iterdir()}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.dcm")} == expected
