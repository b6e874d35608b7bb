"""A time budget stops training early, and the run still ends with its bundle (``medlens train --budget``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medlens.cli.main import main


@pytest.mark.integration
def test_a_tiny_budget_stops_training_and_the_bundle_is_written(
    tiny: list[str], pneumonia_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["-q", "train", str(pneumonia_run / "ds"), "--out", str(run), *tiny, "--budget", "3s"]
    assert main([*args, "--set", "train.max_epochs=1000", "--set", "train.early_stopping_patience=null"]) == 0
    assert yaml.safe_load((run / "plan.yaml").read_text())["train"]["budget_minutes"] == pytest.approx(3 / 60)
    member = json.loads((run / "seed_0" / "summary.json").read_text())
    assert member["stopped_by"] == "budget"
    assert 1 <= member["epochs"] < 1000 and member["steps"] < 1000 * 5
    assert 3.0 <= member["train_seconds"] < 30.0  # the budget was spent, and not much more
    assert (run / "bundle" / "member_0.safetensors").is_file() and (run / "bundle" / "bundle.yaml").is_file()
    assert json.loads((run / "train_summary.json").read_text())["member_summaries"][0]["stopped_by"] == "budget"


def test_without_a_budget_training_runs_its_epochs(pneumonia_run: Path) -> None:
    member = json.loads((pneumonia_run / "run" / "seed_0" / "summary.json").read_text())
    assert member["stopped_by"] == "epochs or early stopping" and member["epochs"] == 2


@pytest.mark.parametrize(("text", "minutes"), [("90s", 1.5), ("10m", 10.0), ("1.5h", 90.0), ("7", 7.0)])
def test_budget_durations(text: str, minutes: float) -> None:
    from medlens.cli.model_commands import parse_duration

    assert parse_duration(text) == pytest.approx(minutes)


def test_a_bad_budget_names_the_option(pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(pneumonia_run / "ds"), "--out", str(tmp_path / "run"), "--budget", "soon"]) == 1
    assert "--budget" in capsys.readouterr().err and not (tmp_path / "run").exists()
