"""Fixtures for the image I/O tests: the real data, found through MEDLENS_DATA only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medlens.core.settings import get_settings


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = get_settings().data_root
    if root is None or not root.is_dir():
        pytest.skip("MEDLENS_DATA is not set to the shared real data folder (see ../shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def mr_series_dir(data_root: Path) -> Path:
    """The real 192-slice sagittal T1 MPRAGE series."""
    return data_root / "dicom" / "sag_anon_mr_t1_series"


@pytest.fixture(scope="session")
def mr_series_files(mr_series_dir: Path) -> list[Path]:
    return sorted(mr_series_dir.glob("*.dcm"))


@pytest.fixture(scope="session")
def testdata(data_root: Path) -> Path:
    """pydicom's sample files (CT_small, MR_small, JPEG 2000, multi-frame, SEG, DICOMDIR trees)."""
    return data_root / "dicom" / "pydicom_testdata"


@pytest.fixture(scope="session")
def mr_volume(mr_series_dir: Path):
    """The series read once by medlens (the reader under test)."""
    from medlens.io import read_image

    return read_image(mr_series_dir)


def _tool(name: str) -> str:
    """The path of a checking tool; a missing one fails the test in CI (``CI=true``) and skips it elsewhere."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (run 'make system-packages')"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def dcm2niix() -> str:
    return _tool("dcm2niix")


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    return _tool("dciodvfy")
