"""Outputs that appear whole or not at all, and never at the cost of something a user made.

Every command writes into a temporary sibling and renames it into place when it has finished, so an
interrupted or failed command leaves nothing half-written (DESIGN.md, "nothing is lost"). A folder medlens
creates carries a marker file (:data:`MARKER`); an existing output folder is replaced only when the user asks
(``overwrite``) *and* it carries that marker, so ``--overwrite`` can never delete a folder of scans. An output
equal to or inside one of the command's inputs (or holding one of them) is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError

MARKER = ".medlens"


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(
    target: str | Path, *, overwrite: bool = False, inputs: Sequence[tuple[str, str | Path]] = ()
) -> None:
    """Raise unless ``target`` may be written: not a file, not tied to an input, empty or replaceable.

    Args:
        target: the output folder.
        overwrite: the user asked to replace an existing folder (only one medlens made is replaced).
        inputs: ``(what, path)`` pairs the command reads (``("input", scans)``, ``("run folder", run)``); the
            output may be neither equal to, inside of, nor a parent of any of them.

    Raises:
        InputError: naming ``target`` and the reason.
    """
    target_path = Path(target)
    if target_path.is_file() or (target_path.exists() and not target_path.is_dir()):
        raise InputError(target_path, "is a file, not a folder (choose another --out)")
    resolved = _resolved(target_path)
    for what, path in inputs:
        source = _resolved(path)
        if _inside(resolved, source):
            raise InputError(target_path, f"lies inside (or is) the {what} {path}; choose an --out outside it")
        if _inside(source, resolved):
            raise InputError(target_path, f"holds the {what} {path}; choose an --out that does not contain it")
    if target_path.is_dir() and any(target_path.iterdir()):
        if not overwrite:
            raise InputError(target_path, "exists and is not empty (choose another --out, or --overwrite)")
        if not (target_path / MARKER).is_file():
            raise InputError(
                target_path,
                f"was not made by medlens (no {MARKER} marker file); --overwrite replaces only such folders",
            )


def check_output_file(
    target: str | Path, *, overwrite: bool = False, inputs: Sequence[tuple[str, str | Path]] = ()
) -> None:
    """Raise unless the file ``target`` may be written: not a folder, neither an input nor inside one, and new
    unless ``overwrite`` (a file carries no marker: ``--overwrite`` is the user's word for it).

    Raises:
        InputError: naming ``target`` and the reason.
    """
    target_path = Path(target)
    if target_path.is_dir():
        raise InputError(target_path, "is a folder, not a file")
    resolved = _resolved(target_path)
    for what, path in inputs:
        if _inside(resolved, _resolved(path)):
            raise InputError(target_path, f"is (or lies inside) the {what} {path}; choose another output")
    if target_path.exists() and not overwrite:
        raise InputError(target_path, "output exists (use --overwrite to replace it)")


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as made by medlens (what it holds, and when)."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    (folder / MARKER).write_text(json.dumps({"kind": kind, "created": stamp}) + "\n")


@contextlib.contextmanager
def output_folder(
    target: str | Path,
    *,
    kind: str,
    overwrite: bool = False,
    inputs: Sequence[tuple[str, str | Path]] = (),
) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``target`` only if the block finishes without error.

    Args:
        target: the folder to create.
        kind: what the folder holds (``predictions``, ``evaluation``, ``dataset``, ``export``...), recorded in
            its marker.
        overwrite: replace an existing ``target`` that medlens made (see :func:`check_output_folder`).
        inputs: folders and files the command reads, which the output must stay clear of.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "result"
        >>> with output_folder(out, kind="example") as tmp:
        ...     _ = (tmp / "a.txt").write_text("done")
        >>> (out / "a.txt").read_text(), (out / MARKER).is_file()
        ('done', True)
    """
    target = Path(target)
    check_output_folder(target, overwrite=overwrite, inputs=inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result gets a folder's usual permissions
    except OSError as exc:
        raise InputError(target, f"cannot be written ({exc.strerror or exc})") from None
    try:
        write_marker(tmp, kind)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_output_folder(target, overwrite=overwrite, inputs=inputs)  # nothing appeared there meanwhile
    replace_folder(tmp, target)


def replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first and removed only once ``new`` is in
    place. Callers check that ``target`` is theirs to replace (:func:`check_output_folder`, or a folder inside an
    output medlens is writing)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / "content")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / "content", target)  # put the previous result back
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``target``; it replaces ``target`` only when the block succeeds."""
    target = Path(target)
    if target.is_dir():
        raise InputError(target, "is a folder, not a file")
    tmp: Path | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
            tmp = Path(tmp_name)  # from here on the temporary file is removed whatever happens
            os.close(fd)
        except OSError as exc:
            raise InputError(target, f"cannot be written ({exc.strerror or exc})") from None
        with open(tmp, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_file(target, "w") as handle:
        handle.write(text)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so it serialises as standard JSON.

    NaN and infinity are not JSON (RFC 8259); strict parsers reject Python's bare ``NaN``. Metrics that are
    undefined are reported as ``null`` (with a note where it helps), never as ``NaN``.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return strict_json(value.item())
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """Standard JSON (no NaN or infinity) for ``value``; see :func:`strict_json`."""
    return json.dumps(strict_json(value), indent=indent, allow_nan=False)


def write_json(target: str | Path, value: Any, indent: int | None = 2) -> None:
    """Write ``value`` as standard JSON to ``target``, atomically."""
    write_text_atomic(target, json_text(value, indent) + "\n")


def unique_stem(path: Path, used: set[str]) -> str:
    """The name an input's outputs start with: its file name up to the first dot, numbered when ``used`` has it
    (``scan``, ``scan_1``, ...); recorded in ``used``."""
    stem = path.name.split(".")[0] or "input"
    candidate, i = stem, 1
    while candidate in used:
        candidate, i = f"{stem}_{i}", i + 1
    used.add(candidate)
    return candidate


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """A CSV of ``rows`` whose columns are every key, in the order first seen (a row may lack some)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
