"""The audit trail: one database row per ``/v1`` call, written before the answer leaves.

Rows are written by one thread that commits whatever has queued up in one transaction (a group commit), so a
busy service writes one transaction per batch of calls while each caller still gets its answer only once its row
is stored. A row holds the time, the key's name, the route, the model and its version, the SHA-256 of the upload,
the status, the latency and a short summary of the result: never a file name, a header value or anything else
that could name a patient.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, insert

from medlens.core.outputs import strict_json
from medlens.serve.database import audit

log = logging.getLogger(__name__)

SUMMARY_CHARS = 1000
_STOP = object()


class AuditWriter:
    """Writes audit rows from a queue, many per transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="medlens-audit", daemon=True)
        self._thread.start()

    async def write(self, row: dict[str, Any]) -> None:
        """Store ``row``; return when it is committed (raises when the database refused it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, error)

        self._queue.put((row, settle))
        await future

    def write_now(self, row: dict[str, Any]) -> None:
        """Store ``row`` from a thread that is not the event loop, and wait for it."""
        done = threading.Event()
        box: list[BaseException | None] = []

        def settle(error: BaseException | None) -> None:
            box.append(error)
            done.set()

        self._queue.put((row, settle))
        done.wait()
        if box[0] is not None:
            raise box[0]

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < 1000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            error: BaseException | None = None
            try:
                with self.engine.begin() as connection:
                    connection.execute(insert(audit), [row for row, _ in batch])
            except Exception as exc:
                log.error("audit rows could not be written: %s", type(exc).__name__)
                error = exc
            for _, settle in batch:
                settle(error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def audit_row(
    *,
    request_id: str,
    method: str,
    route: str,
    status: int,
    seconds: float,
    key_name: str | None = None,
    model: str | None = None,
    model_version: str | None = None,
    upload_sha256: str | None = None,
    summary: str | None = None,
) -> dict[str, Any]:
    """One audit row (the columns of :data:`medlens.serve.database.audit`)."""
    return {
        "time": dt.datetime.now(dt.timezone.utc),
        "request_id": request_id,
        "key_name": key_name,
        "method": method,
        "route": route,
        "model": model,
        "model_version": model_version,
        "upload_sha256": upload_sha256,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "summary": None if summary is None else summary[:SUMMARY_CHARS],
    }


def summarize(result: dict[str, Any], drop: Callable[[str], bool] = lambda key: key in ("source", "model")) -> str:
    """A short JSON summary of a prediction's ``to_dict()``: numbers, labels and small mappings kept, long lists
    counted (a detection's boxes become their number), the source and model (stored in their own columns) left out.
    """
    out: dict[str, Any] = {}
    for key, value in result.items():
        if drop(key):
            continue
        if (isinstance(value, list) and (len(value) > 8 or any(isinstance(v, dict | list) for v in value))) or (
            isinstance(value, dict) and len(value) > 16
        ):
            out[f"n_{key}"] = len(value)
        else:
            out[key] = value
    return json.dumps(strict_json(out), separators=(",", ":"), default=str)[:SUMMARY_CHARS]
