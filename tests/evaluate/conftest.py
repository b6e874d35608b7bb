"""Fixtures for the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from evaluate.prediction_cases import make_case


@pytest.fixture
def case_factory() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The :func:`make_case` generator, as a fixture."""
    return make_case
