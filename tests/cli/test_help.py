"""Every command explains itself with --help, and the registry command lists models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medlens.cli.main import main

COMMANDS = [
    ["import", "medmnist"],
    ["import", "folder"],
    ["import", "csv"],
    ["plan"],
    ["train"],
    ["evaluate"],
    ["predict"],
    ["models"],
    ["info"],
    ["convert"],
    ["deid"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and len(out.splitlines()) > 5


def test_models_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("resnet18", "monai_resnet18", "monai_densenet121"):
        assert name in out


def test_console_script_runs(medlens_script: Path) -> None:
    result = subprocess.run([str(medlens_script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "import" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train"], "Missing argument"),
        (["predict", "run", "x.png", "--out", "o", "--nonsense"], "No such option"),
        (["evaluate", "run", "--out", "o", "--bootstrap", "many"], "Invalid value for '--bootstrap'"),
    ],
)
def test_usage_errors_are_usage_errors_not_internal_ones(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Usage: medlens" in err and "internal error" not in err


def test_short_help_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "-h"]) == 0
    assert "--nonfinite" in capsys.readouterr().out
