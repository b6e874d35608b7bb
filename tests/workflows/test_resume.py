"""A run killed mid-training resumes from its last checkpoint and finishes what it planned."""

from __future__ import annotations

from pathlib import Path

import pytest

from interrupt import kill_then_resume


@pytest.mark.integration
def test_resume_after_kill(tiny: list[str], pneumonia_run: Path, tmp_path: Path) -> None:
    args = [
        str(pneumonia_run / "ds"),
        *tiny,
        "--set",
        "train.max_epochs=4",
        "--set",
        "train.early_stopping_patience=null",
    ]
    kill_then_resume(args, tmp_path / "run", "seed_0", epochs=4)
