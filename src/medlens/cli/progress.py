"""Rich progress bars for the library's progress callbacks (the only place medlens draws a bar)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from medlens.core.progress import ProgressFn


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressFn | None]:
    """Yield a callback that draws one bar per stage on stderr (nothing when stderr is not a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total)

        yield update
