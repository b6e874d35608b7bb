"""Kill a real ``medlens train`` process mid-run, then finish it with ``--resume`` (shared by the resume tests).

The proof that a resume is a resume, not a restart: the checkpoint the killed process left says which epoch
and step it had reached; the resumed session's own training log (Lightning's CSV log, which the resumed session
writes afresh) must start after that epoch and that step and cover each remaining epoch exactly once, and the
member's summary must count every step of the run (the budget state travels in the checkpoint).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class Resumed:
    """What happened: the member's final summary, where the kill struck, what the resumed session trained."""

    summary: dict[str, Any]
    killed_after_epoch: int  # the last epoch the checkpoint holds (0-based)
    killed_at_step: int  # the optimiser steps done when it was written
    resumed_epochs: list[int]  # epochs in the resumed session's training log
    resumed_steps: list[int]  # steps logged in the resumed session


def _logged(member_dir: Path) -> tuple[list[int], list[int]]:
    """Epochs and steps in the log of the member's last training session (``logs/session_N/metrics.csv``)."""
    sessions = sorted(member_dir.glob("logs/session_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    with open(sessions[-1], newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = sorted({int(r["epoch"]) for r in rows if r.get("epoch")})
    steps = sorted(int(r["step"]) for r in rows if r.get("step"))
    return epochs, steps


def kill_then_resume(train_args: list[str], run: Path, member: str, epochs: int) -> Resumed:
    """Start ``medlens train *train_args --out run``; SIGKILL it once ``run/member`` has a last checkpoint with
    epochs still to go; resume; check the resume continued from the checkpoint; return what happened.

    Fails if training ends before it can be killed."""
    medlens = str(Path(sys.executable).with_name("medlens"))
    proc = subprocess.Popen([medlens, "-q", "train", *train_args, "--out", str(run)], stdout=subprocess.DEVNULL)
    last = run / member / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.3)  # let the checkpoint be written out
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / member / "summary.json").exists() and not (run / "bundle").exists()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    killed_after, killed_step = int(ckpt["epoch"]), int(ckpt["global_step"])
    assert killed_after < epochs - 1, f"killed after the last epoch ({killed_after}): nothing left to resume"
    done = subprocess.run(
        [medlens, "-q", "train", train_args[0], "--out", str(run), "--resume"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads((run / member / "summary.json").read_text())
    assert summary["epochs"] == epochs, f"killed after epoch {killed_after}, resumed run ended at {summary['epochs']}"
    assert (run / "bundle" / "member_0.safetensors").is_file()
    resumed_epochs, resumed_steps = _logged(run / member)
    # the resumed session trained the remaining epochs, each once, and none of those done before the kill
    assert resumed_epochs == list(range(killed_after + 1, epochs)), (killed_after, resumed_epochs)
    assert min(resumed_steps) >= killed_step, (killed_step, resumed_steps[:5])
    with open(run / member / "logs" / "metrics.csv", newline="") as handle:  # every session, joined for the user
        joined = {int(r["epoch"]) for r in csv.DictReader(handle) if r.get("epoch")}
    assert joined >= set(resumed_epochs) and min(joined) == 0, sorted(joined)
    return Resumed(summary, killed_after, killed_step, resumed_epochs, resumed_steps)
