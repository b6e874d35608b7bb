"""Worker processes and signals: a SIGTERM must never leave a lock of the pool's queues held by a dead process."""

from __future__ import annotations

import multiprocessing
import time

from medlens.deid.interrupts import WorkerStop


def _hold_lock_like_a_pool_worker(lock, ready) -> None:
    WorkerStop().install()
    with lock:  # Pool's worker sends each result under the result queue's write lock
        ready.set()
        time.sleep(60)


def test_sigterm_between_files_releases_the_queue_lock() -> None:
    """A worker killed holding the lock hangs Pool.terminate() for good (seen with SIGTERM to the group)."""
    context = multiprocessing.get_context("fork")  # the target lives in a test module spawn could not import
    lock, ready = context.Lock(), context.Event()
    process = context.Process(target=_hold_lock_like_a_pool_worker, args=(lock, ready))
    process.start()
    try:
        assert ready.wait(30)
        process.terminate()  # SIGTERM, as Pool.terminate() sends it
        process.join(30)
        assert process.exitcode == 143
        assert lock.acquire(timeout=5), "the lock died with the worker"
    finally:
        if process.is_alive():
            process.kill()
