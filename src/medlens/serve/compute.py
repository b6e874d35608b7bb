"""The compute pool: model work runs in threads sized to the machine, never on the event loop.

Requests put their image on a queue and wait on a future; each worker thread takes the oldest waiting request
and, with it, the other requests for the same model that are already waiting (up to the task's batch size), and
predicts them together through ``bundle.predict_many``, which batches and isolates a failing input. So a quiet
service answers each request at once, and a busy one batches as the library's own batch prediction does. A
failure is handed back to its request alone; the worker goes on.

A model is computed by one worker at a time: while its batch runs, the requests that arrive for it wait and go
together in its next batch. Two workers splitting one model's queue would each predict half-size batches and
fight for the GIL in the network's Python code (measured with ``benchmarks/serve.py``: at 16 clients on a 2-core
machine, batches averaged 3 images and throughput was a third of ``predict_many``'s). The other workers serve
the other models and the jobs meanwhile.

PyTorch releases the GIL in its kernels, so threads share the cores; each worker's torch threads are set so that
workers x threads matches the cores.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.core.errors import MedlensError

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.serve.catalog import ServedModel

log = logging.getLogger(__name__)


def machine_cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class _Work:
    model: ServedModel
    image: Image
    done: Callable[[Prediction | BaseException], None]
    queued: float = field(default_factory=time.perf_counter)


class ComputePool:
    """Worker threads that predict queued images, batching those that wait for the same model.

    Args:
        workers: threads (default: the machine's cores).
        on_batch: called with (model name, batch size, seconds) after each batch, for metrics.
    """

    def __init__(self, workers: int | None = None, on_batch: Callable[[str, int, float], None] | None = None):
        self.workers = workers or machine_cores()
        self._on_batch = on_batch
        self._waiting: OrderedDict[str, deque[_Work]] = OrderedDict()
        self._count = 0
        self._busy: set[str] = set()  # models a worker is predicting now
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"medlens-compute-{i}", daemon=True) for i in range(self.workers)
        ]
        import torch

        torch.set_num_threads(max(1, machine_cores() // self.workers))
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        """Requests waiting for a worker."""
        return self._count

    def submit(self, model: ServedModel, image: Image, done: Callable[[Prediction | BaseException], None]) -> None:
        """Queue ``image`` for ``model``; ``done`` is called from a worker thread with the prediction or error."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the compute pool is stopping")
            self._waiting.setdefault(model.name, deque()).append(_Work(model, image, done))
            self._count += 1
            self._cond.notify()

    async def predict(self, model: ServedModel, image: Image) -> Prediction:
        """Predict ``image`` with ``model`` in the pool; the event loop waits without blocking."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()

        def done(outcome: Prediction | BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, outcome)

        self.submit(model, image, done)
        return await future

    def predict_now(self, model: ServedModel, image: Image) -> Prediction:
        """Predict ``image`` in the pool and wait for it (from a thread that is not the event loop)."""
        box: list[Prediction | BaseException] = []
        ready = threading.Event()

        def done(outcome: Prediction | BaseException) -> None:
            box.append(outcome)
            ready.set()

        self.submit(model, image, done)
        ready.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)

    def _take(self) -> list[_Work] | None:
        with self._cond:
            while not (free := [n for n in self._waiting if n not in self._busy]):
                if self._stopping and not self._count:
                    return None
                self._cond.wait()
            # of the models no worker is predicting, the one whose oldest request has waited longest
            name = min(free, key=lambda n: self._waiting[n][0].queued)
            queue = self._waiting[name]
            batch = [queue.popleft() for _ in range(min(len(queue), queue[0].model.batch_size))]
            if not queue:
                del self._waiting[name]
            self._count -= len(batch)
            self._busy.add(name)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            name = batch[0].model.name
            start = time.perf_counter()
            try:
                outcomes = predict_batch(batch[0].model, [w.image for w in batch])
            except BaseException as exc:
                log.exception("compute failed for a batch of %d on %s", len(batch), name)
                outcomes = [exc] * len(batch)
            finally:
                with self._cond:
                    self._busy.discard(name)
                    self._cond.notify_all()
            if self._on_batch is not None:
                self._on_batch(name, len(batch), time.perf_counter() - start)
            for work, outcome in zip(batch, outcomes, strict=True):
                try:
                    work.done(outcome)
                except Exception:
                    log.exception("could not hand a result back")


def predict_batch(model: ServedModel, images: list[Image]) -> list[Any]:
    """Predict ``images`` together; each outcome is its prediction or the error that input alone raised.

    Inputs medlens refuses come back as their :class:`MedlensError`; an unexpected failure of a batch is retried
    input by input, so it comes back only for the input that causes it.
    """
    try:
        return _predict_together(model, images)
    except Exception as exc:
        if len(images) == 1:
            log.exception("prediction failed on %s", model.name)
            return [exc]
        return [predict_batch(model, [image])[0] for image in images]


def _predict_together(model: ServedModel, images: list[Image]) -> list[Any]:
    outcomes: list[Any] = []

    def failed(item: Any, error: MedlensError) -> None:
        outcomes.append(error)

    for prediction in model.bundle.predict_many(images, on_error=failed):
        outcomes.append(prediction)
    if len(outcomes) != len(images):  # predict_many yields and reports in input order; anything else is a bug
        raise RuntimeError(f"{len(images)} inputs gave {len(outcomes)} outcomes")
    return outcomes


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the request went away (client disconnected)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
