"""In CI (``CI=true``) missing data or a missing checking tool fails the run; elsewhere it is a skip with the reason.

A throwaway test file is run by pytest in a subprocess with this suite's ``conftest.py`` loaded as a plugin, once
with ``CI=true`` and once without, and ``MEDLENS_DATA`` unset (or pointing at an empty folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

THROWAWAY = """
from suite_support import tool


def test_needs_the_data_root(data_root):
    pass


def test_needs_a_data_set(hippocampus_root):
    pass


def test_needs_a_checking_tool():
    tool("medlens-no-such-checker", "no-such-package")
"""


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_throwaway.py").write_text(THROWAWAY)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "MEDLENS_DATA", "PYTEST_ADDOPTS")}
    base["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rsf"]
    return subprocess.run(
        [*command, "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_throwaway.py")],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
@pytest.mark.parametrize("data", ["unset", "empty folder"])
def test_in_ci_missing_data_and_tools_fail(tmp_path: Path, data: str) -> None:
    env = {"CI": "true"} | ({"MEDLENS_DATA": str(tmp_path / "empty")} if data != "unset" else {})
    (tmp_path / "empty").mkdir()
    done = _run(tmp_path, env)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-1]
    # a failing session fixture counts as an error; the data root itself exists in the "empty folder" case
    expected = "1 failed, 2 errors" if data == "unset" else "1 failed, 1 passed, 1 error"
    assert expected in summary and "skipped" not in summary, summary
    reason = "MEDLENS_DATA is not set" if data == "unset" else "Task04_Hippocampus"
    assert reason in done.stdout and "medlens-no-such-checker is not installed" in done.stdout
    assert "CI=true: missing data or tools fail the run" in done.stdout


@pytest.mark.integration
def test_outside_ci_they_are_skips_with_the_reason_and_counted(tmp_path: Path) -> None:
    done = _run(tmp_path, {"CI": "false"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 skipped" in done.stdout and "MEDLENS_DATA is not set" in done.stdout
    assert "medlens: 3 test(s) skipped" in done.stdout
