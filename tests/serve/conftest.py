"""Fixtures of the service tests: real uploads built from the shared data (helpers are in ``tests/serving.py``).

Each test module uses one trained run (``pneumonia_run``, ``hippo_run`` or ``bccd_run``) so that it shares that run's
xdist group with the other tests of the suite that train it (a test naming two runs would train them again).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from serving import png_bytes


@pytest.fixture(scope="session")
def pneumonia_png(medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> bytes:
    """A real PneumoniaMNIST test image as PNG bytes."""
    return png_bytes(medmnist_subset("pneumoniamnist", 1, 1, 1)["test_images"][0])


@pytest.fixture(scope="session")
def hippocampus_nifti(hippocampus_root: Path) -> Path:
    """A real Hippocampus MRI volume (NIfTI), one the hippo_run did not train on."""
    return sorted((hippocampus_root / "imagesTr").glob("hippocampus_*.nii.gz"))[-1]


@pytest.fixture(scope="session")
def identified_dicom(real_data: Callable[[str], Path]) -> Path:
    """A CT file whose header is full of (fake) patient details."""
    return real_data("dicom/deid_data/ctbrain1.dcm")
