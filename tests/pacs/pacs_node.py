"""Helpers for the node tests: wait for a condition, a ``medlens listen`` subprocess, storescu, the journal."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_AE = "MEDLENS"


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class NodeProcess:
    """A ``medlens listen`` subprocess on a free port."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.process = subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        self.process.kill()  # SIGKILL: no handler, no cleanup
        self.process.wait()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            return self.process.wait(60)
        return int(self.process.returncode)


def send(storescu: str, port: int, files: list[Path], *, calling: str = "STORESCU") -> subprocess.CompletedProcess[str]:
    """storescu of ``files`` to the node on ``port``."""
    return subprocess.run(
        [storescu, "-aet", calling, "-aec", NODE_AE, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
    )


def journal_rows(spool: Path) -> list[Any]:
    from medlens.pacs.journal import Journal

    if not (spool / "journal.sqlite3").is_file():
        return []
    journal = Journal(spool, readonly=True)
    try:
        return journal.rows()
    finally:
        journal.close()
