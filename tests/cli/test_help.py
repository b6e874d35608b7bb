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
