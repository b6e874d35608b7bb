"""Fixtures for the image I/O tests (the data root, the MR series and the tools are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mr_series_files(mr_series_dir: Path) -> list[Path]:
    return sorted(mr_series_dir.glob("*.dcm"))


@pytest.fixture(scope="session")
def testdata(real_data: Callable[[str], Path]) -> Path:
    """pydicom's sample files (CT_small, MR_small, JPEG 2000, multi-frame, SEG, DICOMDIR trees)."""
    return real_data("dicom/pydicom_testdata")


@pytest.fixture(scope="session")
def mr_volume(mr_series_dir: Path):
    """The series read once by medlens (the reader under test)."""
    from medlens.io import read_image

    return read_image(mr_series_dir)
