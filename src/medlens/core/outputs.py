"""Outputs that appear whole or not at all.

Every command writes into a temporary sibling and renames it into place when it has finished, so an
interrupted or failed command leaves nothing half-written (DESIGN.md, "nothing is lost").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medlens.core.errors import InputError


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``target`` only if the block finishes without error.

    Args:
        target: the folder to create.
        overwrite: replace an existing ``target``; otherwise an existing non-empty folder is an error.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "result"
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "a.txt").write_text("done")
        >>> (out / "a.txt").read_text()
        'done'
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError(target, "output folder exists and is not empty (choose another --out or remove it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w") -> Iterator[object]:
    """Open a temporary file beside ``target``; it replaces ``target`` only when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with open(tmp, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_file(target, "w") as handle:
        handle.write(text)  # type: ignore[attr-defined]
