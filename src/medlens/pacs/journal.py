"""The node's journal: one row per received series and the state it is in, in SQLite inside the spool.

States, in order::

    receiving -> received -> predicting -> predicted -> sending -> sent      (results forwarded)
                                                               -> stored    (no --forward: results kept in out/)
                         -> passed_over  (the model does not take this series; the reason is kept)
                         -> failed       (files moved to failed/<id>/ with reason.txt)

Every change of state is a committed transaction (WAL, ``synchronous=FULL``) that also appends to an
``events`` table, so the history of each series survives a ``kill -9`` at any point; the node reads the states
again when it starts (:class:`~medlens.pacs.node.Node` resumes each series from where it stood). Written with
the standard library's ``sqlite3``: a transactional, crash-safe store is exactly what it is for.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError

STATES = (
    "receiving",
    "received",
    "predicting",
    "predicted",
    "sending",
    "sent",
    "stored",
    "passed_over",
    "failed",
)
FINAL = frozenset({"sent", "stored", "passed_over", "failed"})
JOURNAL_FILE = "journal.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    calling_ae TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    instances INTEGER NOT NULL DEFAULT 0,
    results INTEGER NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    finished REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_state ON series(state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_id INTEGER NOT NULL,
    time REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class SeriesRow:
    """One series in the journal (times are seconds since the epoch)."""

    id: int
    series_uid: str
    study_uid: str
    modality: str
    calling_ae: str
    state: str
    instances: int
    results: int
    tries: int
    next_try: float
    reason: str
    first_received: float
    last_received: float
    finished: float | None
    updated: float

    def line(self) -> str:
        """One line for ``medlens listen --status``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.updated))
        extra = f" tries {self.tries}" if self.tries else ""
        reason = f" - {self.reason}" if self.reason else ""
        return (
            f"{self.id:>5}  {self.state:<11} {when}  {self.modality or '--':<3} {self.instances:>5} inst "
            f"{self.results:>2} res{extra}  series {self.series_uid}  from {self.calling_ae or '?'}{reason}"
        )


class Journal:
    """The journal in ``folder/journal.sqlite3`` (created when missing), safe to use from several threads."""

    def __init__(self, folder: Path, *, readonly: bool = False) -> None:
        self.path = Path(folder) / JOURNAL_FILE
        if readonly and not self.path.is_file():
            raise InputError(folder, f"no {JOURNAL_FILE} here: not a medlens listen spool")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(self.path, f"not a readable journal ({exc})") from None
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: Iterable[Any], series_id: int | None, state: str, detail: str) -> int:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self.db.execute(sql, tuple(args))
                row_id = series_id if series_id is not None else int(cursor.lastrowid or 0)
                self.db.execute(
                    "INSERT INTO events (series_id, time, state, detail) VALUES (?, ?, ?, ?)",
                    (row_id, time.time(), state, detail),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return row_id

    def open_series(self, series_uid: str, study_uid: str, modality: str, calling_ae: str) -> int:
        """A new row in state ``receiving``; returns its id."""
        now = time.time()
        return self._write(
            "INSERT INTO series (series_uid, study_uid, modality, calling_ae, state, first_received, last_received,"
            " updated) VALUES (?, ?, ?, ?, 'receiving', ?, ?, ?)",
            (series_uid, study_uid, modality, calling_ae, now, now, now),
            None,
            "receiving",
            f"from {calling_ae}",
        )

    def set_state(self, series_id: int, state: str, detail: str = "", **fields: Any) -> None:
        """Move a series to ``state`` (and set ``fields``: instances, results, tries, next_try, reason, ...)."""
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}")
        now = time.time()
        values = {"state": state, "updated": now, **fields}
        if state in FINAL:
            values.setdefault("finished", now)
        columns = ", ".join(f"{k} = ?" for k in values)
        self._write(
            f"UPDATE series SET {columns} WHERE id = ?", [*values.values(), series_id], series_id, state, detail
        )

    def rows(self, states: Iterable[str] | None = None) -> list[SeriesRow]:
        """The series (in arrival order), or only those in ``states``."""
        wanted = list(states) if states is not None else None
        sql = "SELECT * FROM series"
        if wanted is not None:
            sql += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
        with self.lock:
            found = self.db.execute(sql + " ORDER BY id", tuple(wanted or ())).fetchall()
        return [SeriesRow(*row) for row in found]

    def get(self, series_id: int) -> SeriesRow:
        with self.lock:
            row = self.db.execute("SELECT * FROM series WHERE id = ?", (series_id,)).fetchone()
        if row is None:
            raise KeyError(series_id)
        return SeriesRow(*row)

    def events(self, series_id: int) -> list[tuple[float, str, str]]:
        """The history of one series: (time, state, detail)."""
        with self.lock:
            return [
                (float(t), str(s), str(d))
                for t, s, d in self.db.execute(
                    "SELECT time, state, detail FROM events WHERE series_id = ? ORDER BY id", (series_id,)
                )
            ]
