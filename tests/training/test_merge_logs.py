"""The per-member log joins every training session's CSV, also one cut off by an interruption."""

from __future__ import annotations

import csv
from pathlib import Path

from medlens.training.fitting import merge_logs


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_sessions_are_joined_in_order_and_a_row_longer_than_its_header_keeps_its_known_columns(tmp_path: Path) -> None:
    # session_0 was stopped while the logger rewrote its file for a new column: the last row has one value too many
    _write(tmp_path / "logs/session_0/metrics.csv", "epoch,train_loss\n0,0.9\n1,0.8,0.61\n")
    _write(tmp_path / "logs/session_1/metrics.csv", "epoch,train_loss,val_auc\n2,0.7,0.7\n")
    _write(tmp_path / "logs/session_10/metrics.csv", "epoch,train_loss,val_auc\n3,0.6,0.8\n")
    out = merge_logs(tmp_path)
    assert out == tmp_path / "logs/metrics.csv"
    rows = list(csv.DictReader(open(out, newline="")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]  # session_10 after session_1: numeric order
    assert [r["session"] for r in rows] == ["session_0", "session_0", "session_1", "session_10"]
    assert rows[1] == {"epoch": "1", "train_loss": "0.8", "val_auc": "", "session": "session_0"}
    assert rows[3]["val_auc"] == "0.8"
