"""dciodvfy (dicom3tools) finds no error in a de-identified file that it did not find in the original."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from medlens.deid.pseudonyms import Pseudonymizer
from medlens.deid.worker import output_relpath

pytestmark = pytest.mark.integration


def errors(dciodvfy: str, path: Path) -> set[str]:
    """dciodvfy's error lines, with values (which de-identification changes on purpose) blanked."""
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, timeout=60)
    lines = set()
    for line in (run.stdout + run.stderr).decode("latin-1").splitlines():
        if "Error" in line:
            line = re.sub(r"= <[^>]*>", "= <>", line)
            line = re.sub(r"<[0-9.]+>", "<uid>", line)
            lines.add(re.sub(r"values are .*", "values are", line).strip())
    return lines


def test_no_new_dciodvfy_errors(full_run, dicom_root: Path, key_file: Path, dciodvfy: str) -> None:
    _report, out, _mapping = full_run
    pseudo = Pseudonymizer(key_file.read_bytes().strip())
    sample = [p for p in sorted(dicom_root.rglob("*")) if p.is_file() and "sag_anon" not in p.parts[-2]]
    sample += sorted((dicom_root / "sag_anon_mr_t1_series").glob("*.dcm"))[::48]
    checked, new = 0, {}
    for original in sample:
        output = out / output_relpath(pseudo, original.relative_to(dicom_root).as_posix())
        if not output.exists():
            continue
        checked += 1
        added = errors(dciodvfy, output) - errors(dciodvfy, original)
        if added:
            new[original.name] = sorted(added)
    assert checked >= 40
    assert new == {}
