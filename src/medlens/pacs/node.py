"""``medlens listen``: a DICOM node that receives studies by C-STORE, predicts each complete series, and sends
the results on.

- **Receiving** (``pynetdicom`` Storage SCP with Verification): every instance is written to the spool whole and
  durably (temporary file, fsync, rename) *before* the node answers success; a dataset that cannot be decoded,
  lacks its UIDs, or is of a modality the node does not ``accept`` is answered with a DIMSE failure status and
  the node goes on. Calling AE titles can be restricted, and the number of simultaneous associations limited.
- **Series**: instances are grouped by SeriesInstanceUID; a series is complete after ``series_timeout`` seconds
  without a new instance of it, once no association that sent instances of it is still open (a sender that pauses
  mid-series, a slow disk or a busy machine, does not split the series in two; an idle association is ended by the
  node's network timeout, 60 s).
- **Predicting**: the bundle's rules decide whether the model takes the series (:mod:`.rules`); the prediction
  and its result objects (:mod:`.results`) are made once and kept in the spool before anything is sent, so the
  results keep their UIDs whatever happens next.
- **Sending** (Storage SCU, :mod:`.sender`) to ``forward``; a destination that is down is tried again with
  exponential backoff, and after ``send_tries`` tries the series goes to ``failed/<id>/`` with its reason.

Nothing is lost: the spool is the source of truth and the journal (:mod:`.journal`) records each series' state.
A node killed at any point (``kill -9`` included) and started again on the same spool finishes every received
series exactly once: a series still receiving waits ``series_timeout`` again, one cut during prediction is
predicted again (nothing of it was sent), one cut while sending is sent again with the same result objects (a
destination keeps one copy per SOP Instance UID).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.errors import InputError, MedlensError, one_line
from medlens.pacs.journal import FINAL, Journal
from medlens.pacs.rules import SeriesRules, rules_for
from medlens.pacs.sender import Destination, send_files
from medlens.pacs.spool import UID_PATTERN, Spool

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)
# DIMSE C-STORE failure statuses (PS3.4 Annex B.2.3): 0xA7xx out of resources, 0xA9xx data set does not match the
# SOP class, 0xCxxx cannot understand
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
NOT_ACCEPTED = 0xA900


@dataclass
class NodeConfig:
    """How a node listens, groups, and sends.

    Attributes:
        ae_title: the node's AE title.
        host: the address to listen on (``0.0.0.0``: every interface).
        port: the DICOM port.
        spool: the spool folder (created; reused after a restart).
        forward: where results go (None: kept in ``SPOOL/out``).
        series_timeout: seconds without a new instance after which a series is complete (once no association
            that sent instances of it is still open).
        accept: modalities accepted (others are answered with a failure status); empty: every modality.
        calling_aes: AE titles allowed to associate; empty: any.
        max_associations: simultaneous associations accepted.
        send_tries: tries to send a series' results before it goes to ``failed/``.
        retry_wait: seconds before the second try; doubled for each further try (at most 5 minutes).
    """

    ae_title: str = "MEDLENS"
    host: str = "127.0.0.1"
    port: int = 11112
    spool: Path = Path("spool")
    forward: Destination | None = None
    series_timeout: float = 10.0
    accept: list[str] = field(default_factory=list)
    calling_aes: list[str] = field(default_factory=list)
    max_associations: int = 10
    send_tries: int = 5
    retry_wait: float = 2.0


@dataclass
class _Open:
    """A series still receiving: its journal row, when it last got an instance, stores under way."""

    series_id: int
    last: float
    in_flight: int = 0
    instances: int = 0
    associations: set[int] = field(default_factory=set)


class Node:
    """The DICOM node: :meth:`start` listens and works in the background; :meth:`stop` ends both."""

    def __init__(self, bundle: Bundle, config: NodeConfig, rules: SeriesRules | None = None) -> None:
        self.bundle = bundle
        self.config = config
        self.rules = rules or rules_for(bundle)
        self.spool = Spool(config.spool)
        self.journal = Journal(config.spool)
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._server: Any = None
        self._send_due: dict[int, float] = {}

    # ---- life ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume what the spool holds, then listen and work (both in background threads)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import by pynetdicom

        self._warm_up()
        self._resume()
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = self.config.max_associations
        if self.config.calling_aes:
            ae.require_calling_aet = list(self.config.calling_aes)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_association_end),
            (evt.EVT_ABORTED, self._on_association_end),
            (evt.EVT_CONN_CLOSE, self._on_association_end),
        ]
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise InputError(
                f"{self.config.host}:{self.config.port}", f"cannot listen here ({exc.strerror or exc})"
            ) from None
        with self._lock:  # series taken up again wait for their silence from now, when senders can reach the node
            for item in self._open.values():
                item.last = time.monotonic()
        self._worker = threading.Thread(target=self._work, name="medlens-node-worker", daemon=True)
        self._worker.start()
        log.info(
            "listening as %s on %s:%d; spool %s; results to %s",
            self.config.ae_title,
            self.config.host,
            self.config.port,
            self.config.spool,
            self.config.forward or f"{self.config.spool}/out",
        )

    def stop(self) -> None:
        """Stop listening and working; what is in the spool is finished by the next start."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker is not None:
            self._worker.join(timeout=120)
        self.journal.close()

    def wait(self) -> None:
        """Block until :meth:`stop` (or the worker fails)."""
        while not self._stop.is_set():
            if self._worker is not None and not self._worker.is_alive():
                raise RuntimeError("the node's worker stopped")
            self._stop.wait(0.5)

    def _warm_up(self) -> None:
        """Load the networks and run one prediction on a blank image, so that the first series does not wait for
        imports and weights (several seconds) and the node answers C-ECHO only once it is ready."""
        import numpy as np

        from medlens.core.image import Image, default_affine

        plan = self.bundle.plan
        shape = tuple(min(int(s), 64) for s in plan.data.input_size)
        blank = Image(np.zeros((plan.data.channels, *shape), np.float32), default_affine(plan.spatial_dims))
        started = time.perf_counter()
        try:
            self.bundle.predict(blank)
        except MedlensError as exc:  # a model that refuses a blank image still predicts real ones
            log.warning("warm-up prediction refused (%s); the first series will load the model", exc)
            return
        log.info("model %s ready (%.1f s)", self.bundle.name, time.perf_counter() - started)

    def _resume(self) -> None:
        """Take up every series the journal holds unfinished (see the module docstring)."""
        removed = self.spool.remove_partials()
        if removed:
            log.info("removed %d temporary file(s) of a node that was stopped mid-write", removed)
        now = time.monotonic()
        for row in self.journal.rows():
            if row.state in FINAL:
                self.spool.discard(row.id) if row.state != "failed" else None  # leftovers of a kill after the state
                continue
            if row.state == "receiving":
                self._open[row.series_uid] = _Open(row.id, now, instances=len(self.spool.instance_files(row.id)))
                log.info("series %d (%s): receiving again, complete after %.0f s of silence", row.id,
                         row.series_uid, self.config.series_timeout)  # fmt: skip
            elif row.state == "predicting":
                self.journal.set_state(row.id, "received", "restarted during prediction: predicting again")
            elif row.state in ("predicted", "sending"):
                reason = self.spool.failure_reason(row.id)
                if reason is not None:  # moved to failed/ just before the kill
                    self.journal.set_state(row.id, "failed", reason, reason=reason)
                else:
                    self._send_due[row.id] = now

    # ---- receiving -------------------------------------------------------------------------------------------
    def _on_accepted(self, event: Any) -> None:
        requestor = event.assoc.requestor
        log.info("association from %s at %s:%s", requestor.ae_title, requestor.address, requestor.port)

    def _on_rejected(self, event: Any) -> None:
        from medlens.pacs.sender import reject_reason

        requestor, answer = event.assoc.requestor, event.assoc.acceptor.primitive
        log.warning(
            "association from %r at %s rejected (%s)",
            str(requestor.ae_title).strip(),
            requestor.address,
            reject_reason(getattr(answer, "result_source", None), getattr(answer, "diagnostic", None)),
        )

    def _on_association_end(self, event: Any) -> None:
        """An association is released, aborted or its connection closed: its series may now be complete."""
        ended = id(event.assoc)
        with self._lock:
            for item in self._open.values():
                item.associations.discard(ended)

    def _on_store(self, event: Any) -> Any:
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            sop, series = str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)
            study, modality = str(ds.get("StudyInstanceUID", "")), str(ds.get("Modality", "")).upper()
        except Exception as exc:  # pydicom raises many kinds on a malformed dataset; refuse it, keep going
            return _failure(CANNOT_UNDERSTAND, f"cannot decode the dataset or its UIDs ({type(exc).__name__})", calling)
        if not UID_PATTERN.match(series) or not UID_PATTERN.match(sop):
            return _failure(CANNOT_UNDERSTAND, "SOP Instance or Series Instance UID is not a UID", calling)
        if self.config.accept and modality not in self.config.accept:
            return _failure(NOT_ACCEPTED, f"modality {modality or '(none)'} is not accepted", calling)
        try:
            data = event.encoded_dataset()
        except Exception as exc:
            return _failure(CANNOT_UNDERSTAND, f"cannot encode the dataset ({type(exc).__name__})", calling)
        with self._lock:
            current = self._open.get(series)
            if current is None:
                current = _Open(self._series_row(series, study, modality, calling), time.monotonic())
                self._open[series] = current
            current.in_flight += 1
            current.associations.add(id(event.assoc))
        try:
            self.spool.write_instance(current.series_id, sop, data)
        except OSError as exc:
            return _failure(OUT_OF_RESOURCES, f"cannot write to the spool ({exc.strerror or exc})", calling)
        finally:
            with self._lock:
                current.in_flight -= 1
                current.last = time.monotonic()
                current.instances += 1
        return 0x0000

    def _series_row(self, series: str, study: str, modality: str, calling: str) -> int:
        """The journal row new instances of ``series`` go to: one complete but not yet being predicted is receiving
        again (the sender paused longer than the timeout, or the node restarted); otherwise a new row."""
        waiting = [r for r in self.journal.rows(["received"]) if r.series_uid == series]
        if waiting:
            self.journal.set_state(waiting[0].id, "receiving", f"more instances from {calling}: receiving again")
            return waiting[0].id
        return self.journal.open_series(series, study, modality, calling)

    # ---- working ---------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._close_silent() | self._predict_next() | self._send_next()
            except Exception:  # a bug must not stop the node silently: log it, keep the spool, go on
                log.exception("node worker error")
                busy = False
            if not busy:
                self._stop.wait(0.05)

    def _close_silent(self) -> bool:
        now = time.monotonic()
        with self._lock:  # closed and journalled under the lock that new instances take to find their row
            done = [
                (uid, o)
                for uid, o in self._open.items()
                if o.in_flight == 0 and not o.associations and now - o.last >= self.config.series_timeout
            ]
            for uid, item in done:
                del self._open[uid]
                count = len(self.spool.instance_files(item.series_id))
                last = time.time() - (now - item.last)
                self.journal.set_state(
                    item.series_id, "received", f"{count} instance(s), complete", instances=count, last_received=last
                )
                log.info("series %d (%s) complete: %d instance(s)", item.series_id, uid, count)
        return bool(done)

    def _predict_next(self) -> bool:
        from medlens.pacs.series import predict_series

        with self._lock:  # claimed under the lock that new instances take to reopen a complete series
            waiting = self.journal.rows(["received"])
            if not waiting:
                return False
            row = waiting[0]
            self.journal.set_state(row.id, "predicting")
        files = self.spool.instance_files(row.id)
        folder = self.spool.partial_results(row.id)
        try:
            outcome = predict_series(self.bundle, files, folder, self.rules)
        except MedlensError as exc:
            self._fail(row.id, f"prediction failed: {exc}")
            return True
        except Exception as exc:  # an unexpected failure of this series: keep its files, go on with the others
            log.exception("series %d: prediction failed", row.id)
            self._fail(row.id, f"prediction failed: {type(exc).__name__}: {one_line(str(exc))}")
            return True
        if outcome.passed_over is not None:
            self.journal.set_state(row.id, "passed_over", outcome.passed_over, reason=outcome.passed_over)
            self.spool.discard(row.id)
            return True
        results = self.spool.commit_results(row.id, folder)
        self.journal.set_state(row.id, "predicted", f"{len(results)} result object(s)", results=len(results))
        self._send_due[row.id] = time.monotonic()
        return True

    def _send_next(self) -> bool:
        now = time.monotonic()
        due = sorted(i for i, t in self._send_due.items() if t <= now)
        if not due:
            return False
        series_id = due[0]
        row = self.journal.get(series_id)
        results = self.spool.result_files(series_id)
        if self.config.forward is None:
            target = self.spool.keep_results(series_id)
            self.journal.set_state(series_id, "stored", f"results kept in {target}")
            del self._send_due[series_id]
            return True
        self.journal.set_state(series_id, "sending", f"try {row.tries + 1} to {self.config.forward}")
        try:
            send_files(self.config.forward, results, self.config.ae_title)
        except MedlensError as exc:
            tries = row.tries + 1
            if tries >= self.config.send_tries:
                del self._send_due[series_id]
                self._fail(series_id, f"not sent after {tries} tries: {exc}", tries=tries)
                return True
            wait = min(self.config.retry_wait * 2 ** (tries - 1), 300.0)
            self._send_due[series_id] = time.monotonic() + wait
            self.journal.set_state(series_id, "sending", f"{exc}; next try in {wait:.1f} s", tries=tries,
                                   next_try=time.time() + wait, reason=str(exc))  # fmt: skip
            log.warning("series %d: %s; trying again in %.1f s", series_id, exc, wait)
            return True
        del self._send_due[series_id]
        self.journal.set_state(series_id, "sent", f"{len(results)} to {self.config.forward}", tries=row.tries + 1,
                               reason="")  # fmt: skip
        self.spool.discard(series_id)
        log.info("series %d (%s): %d result object(s) sent", series_id, row.series_uid, len(results))
        return True

    def _fail(self, series_id: int, reason: str, **fields: Any) -> None:
        self.spool.fail(series_id, reason)
        self.journal.set_state(series_id, "failed", reason, reason=reason, **fields)
        log.warning("series %d failed: %s (files in %s)", series_id, reason, self.spool.failed(series_id))


def _failure(status: int, comment: str, calling: str) -> Dataset:
    """A C-STORE failure answer with its reason (ErrorComment, 64 characters at most), logged."""
    from pydicom.dataset import Dataset

    log.warning("C-STORE from %s refused (0x%04X): %s", calling, status, comment)
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:64]
    return answer


def read_calling_aes(path: Path) -> list[str]:
    """AE titles allowed to associate: one a line; blank lines and ``#`` comments skipped.

    Raises:
        InputError: unreadable, empty, or a title that is not an AE title.
    """
    from medlens.data.dataset import read_text
    from medlens.pacs.sender import AE_PATTERN

    titles = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        title = line.split("#", 1)[0].strip()
        if not title:
            continue
        if not AE_PATTERN.match(title):
            raise InputError(path, f"line {number}: {title!r} is not an AE title (1 to 16 printable ASCII characters)")
        titles.append(title)
    if not titles:
        raise InputError(path, "lists no AE title: no one could send to the node")
    return titles


def status_lines(spool: Path, states: Sequence[str] | None = None) -> list[str]:
    """The queue of a node's spool: one line per series (for ``medlens listen --status``)."""
    journal = Journal(spool, readonly=True)
    try:
        return [row.line() for row in journal.rows(states)]
    finally:
        journal.close()
