"""Shared fixtures: the real DICOM data (through MEDLENS_DATA) and one full de-identification run."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dicom_root(real_data: Callable[[str], Path]) -> Path:
    return real_data("dicom")


def make_key(folder: Path, name: str = "site.key") -> Path:
    path = folder / name
    path.write_text(secrets.token_hex(32))
    return path


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture()
def other_key(tmp_path: Path) -> Path:
    return make_key(tmp_path, "other.key")


@pytest.fixture(autouse=True)
def _medlens_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write the default key into the real home."""
    monkeypatch.setenv("MEDLENS_HOME", str(tmp_path_factory.getbasetemp() / "medlens_home"))


@pytest.fixture(scope="session")
def full_run(dicom_root: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every real DICOM file through the basic profile, once, with two worker processes."""
    from medlens.deid import deidentify

    out = tmp_path_factory.mktemp("full") / "out"
    mapping = out.parent / "mapping.csv"
    report = deidentify(dicom_root, out, key=key_file, workers=2, mapping=mapping)
    return report, out, mapping


@pytest.fixture()
def small_input(dicom_root: Path, tmp_path: Path) -> Path:
    """Ten MR slices, two CT files from another patient, a text file and a truncated copy of a slice."""
    src = tmp_path / "in"
    (src / "mr").mkdir(parents=True)
    (src / "other").mkdir()
    slices = sorted((dicom_root / "sag_anon_mr_t1_series").glob("*.dcm"))[:10]
    for path in slices:
        shutil.copy(path, src / "mr" / path.name)
    for name in ("ctbrain1.dcm", "ctbrain2.dcm"):
        shutil.copy(dicom_root / "deid_data" / name, src / "other" / name)
    (src / "other" / "notes.txt").write_text("not an image")
    data = slices[0].read_bytes()
    (src / "other" / "cut.dcm").write_bytes(data[: len(data) - 5000])
    (src / "other" / "empty.dcm").write_bytes(b"")
    return src
