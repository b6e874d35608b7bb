"""Kill a real ``medlens train`` process mid-run, then finish it with ``--resume`` (shared by the resume tests)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def kill_then_resume(train_args: list[str], run: Path, member: str, epochs: int) -> dict[str, Any]:
    """Start ``medlens train *train_args --out run``; SIGKILL it once ``run/member`` has a last checkpoint (before
    ``epochs`` epochs); resume; return the member's summary. Fails if training ends before it can be killed."""
    medlens = str(Path(sys.executable).with_name("medlens"))
    proc = subprocess.Popen([medlens, "-q", "train", *train_args, "--out", str(run)], stdout=subprocess.DEVNULL)
    last = run / member / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.5)  # let the checkpoint be written out
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / member / "summary.json").exists() and not (run / "bundle").exists()
    epoch_at_kill = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert epoch_at_kill < epochs
    done = subprocess.run(
        [medlens, "-q", "train", train_args[0], "--out", str(run), "--resume"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads((run / member / "summary.json").read_text())
    assert summary["epochs"] == epochs, f"killed after epoch {epoch_at_kill}, resumed run ended at {summary['epochs']}"
    assert (run / "bundle" / "member_0.safetensors").is_file()
    return summary
