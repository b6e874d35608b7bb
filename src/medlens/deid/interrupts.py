"""Ctrl-C and SIGTERM during a run: stop promptly, leave only whole files, never lose the request to stop.

Three places need care. The main process must stop even when a library swallows the exception a signal raised
(pydicom's ``read_sequence_item`` turns any exception while reading into ``OSError``, which is a skipped file).
Worker processes must leave Ctrl-C to the main process (a terminal sends it to the whole process group) and,
when ``Pool.terminate()`` sends them SIGTERM, must not leave the file in hand half-written. Written by hand:
multiprocessing offers no such policy, and these are a few lines of ``signal``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def noted() -> Iterator[Callable[[], None]]:
    """Remember SIGINT and SIGTERM during the block; yield a check that re-raises one a library swallowed.

    Each signal still goes to the handler in place (KeyboardInterrupt for Ctrl-C; the command line's SIGTERM
    handler), so the run stops at once as before. Call the check after each file: if a signal came and its
    exception was swallowed, the check calls that handler again, which raises. Signals whose handler is not a
    Python function (default, ignored) are left alone, as are runs outside the main thread.
    """
    if not _in_main_thread():
        yield lambda: None
        return
    previous: dict[int, Callable[[int, FrameType | None], object]] = {}
    arrived: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)
        previous[signum](signum, frame)

    for signum in _STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, note)

    def check() -> None:
        if arrived:
            previous[arrived[0]](arrived[0], None)

    try:
        yield check
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def ignored_by_new_processes() -> Iterator[None]:
    """Start processes with SIGINT ignored, so a Ctrl-C while they import prints no traceback.

    A spawned interpreter that inherits "ignore SIGINT" never installs its KeyboardInterrupt handler. Only the
    main thread may change handlers; a Ctrl-C during the few milliseconds of process creation is lost.
    """
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


class WorkerStop:
    """In a worker process: ignore Ctrl-C; on SIGTERM, unwind (``SystemExit``) so that nothing stays half-done.

    Unwinding lets the atomic write in progress delete its temporary file, and releases the locks of the pool's
    queues (a worker that dies holding the result queue's lock, as on SIGTERM's default action, hangs
    ``Pool.terminate()`` for good). Once the process is exiting there is nothing left to undo, and an exception
    raised during interpreter shutdown would only print a traceback: then it exits at once.
    """

    def __init__(self) -> None:
        self.exiting = False
        self.exit_code = 0

    def install(self) -> None:
        from multiprocessing import util

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process hears Ctrl-C and stops the pool
        signal.signal(signal.SIGTERM, self._on_sigterm)
        # Process._bootstrap runs these finalizers when the worker loop has ended, before threading shutdown.
        util.Finalize(None, self._mark_exiting, exitpriority=100)

    def _mark_exiting(self) -> None:
        self.exiting = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.exit_code = 128 + signum
        if self.exiting:
            os._exit(self.exit_code)
        raise SystemExit(self.exit_code)

    @contextlib.contextmanager
    def file(self) -> Iterator[None]:
        """Around one file; after it, a worker told to stop whose SystemExit was swallowed (pydicom turns it
        into OSError while reading a sequence item) exits, holding no lock at this point."""
        try:
            yield
        finally:
            if self.exit_code:
                os._exit(self.exit_code)
