"""Lightning callbacks that a caller adds around a whole training run without passing them down every layer.

``medlens tune`` runs each trial as an ordinary ``train`` call and reports every validation to Ray Tune through a
callback given here, so that ASHA can stop a trial early; the training code itself knows nothing of Ray.

Example:
    >>> from medlens.training.observers import observed, observing
    >>> with observing("a callback"):
    ...     observed()
    ['a callback']
    >>> observed()
    []
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_OBSERVERS: ContextVar[tuple[Any, ...]] = ContextVar("medlens_training_observers", default=())


@contextlib.contextmanager
def observing(*callbacks: Any) -> Iterator[None]:
    """Add ``callbacks`` (Lightning callbacks) to every member fitted inside the block."""
    token = _OBSERVERS.set(_OBSERVERS.get() + callbacks)
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


def observed() -> list[Any]:
    """The callbacks added by the enclosing :func:`observing` blocks."""
    return list(_OBSERVERS.get())
