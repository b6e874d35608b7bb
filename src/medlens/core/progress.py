"""How library code reports progress without drawing anything (STYLE.md item 10: Rich belongs to the CLI).

Long functions take ``progress: ProgressFn | None`` and call it as ``progress(stage, done, total)``: a stage
name such as ``"loading train"`` or ``"training seed_0"``, the units done so far, and the total when known.
The command line turns these calls into Rich progress bars; the service and tests pass their own function
or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

ProgressFn = Callable[[str, int, "int | None"], None]
T = TypeVar("T")


def report(progress: ProgressFn | None, stage: str, done: int, total: int | None) -> None:
    """Call ``progress`` when one was given."""
    if progress is not None:
        progress(stage, done, total)


def tracked(items: Iterable[T], progress: ProgressFn | None, stage: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, reporting each one done under ``stage``.

    Example:
        >>> seen = []
        >>> list(tracked([1, 2], lambda s, d, t: seen.append((s, d, t)), "counting"))
        [1, 2]
        >>> seen
        [('counting', 0, 2), ('counting', 1, 2), ('counting', 2, 2)]
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    report(progress, stage, 0, total)
    for done, item in enumerate(items, start=1):
        yield item
        report(progress, stage, done, total)
