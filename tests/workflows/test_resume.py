"""A run killed mid-training resumes from its last checkpoint and finishes what it planned."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch


@pytest.mark.integration
def test_resume_after_kill(tiny: list[str], pneumonia_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    medlens = str(Path(sys.executable).with_name("medlens"))
    args = [
        medlens,
        "-q",
        "train",
        str(pneumonia_run / "ds"),
        "--out",
        str(run),
        *tiny,
        "--set",
        "train.max_epochs=4",
        "--set",
        "train.early_stopping_patience=null",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "seed_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "seed_0" / "summary.json").exists()
    epoch_at_kill = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert epoch_at_kill < 4
    done = subprocess.run(
        [medlens, "-q", "train", str(pneumonia_run / "ds"), "--out", str(run), "--resume"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "seed_0" / "summary.json").read_text())
    assert summary["epochs"] == 4
    assert (run / "bundle" / "member_0.safetensors").is_file()
