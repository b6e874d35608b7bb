"""The node's spool: the received instances and the results made from them, on disk, as the source of truth.

Layout (``<id>`` is the series' row in the journal)::

    SPOOL/
      journal.sqlite3             # the states (medlens.pacs.journal)
      incoming/<id>/<SOP>.dcm     # received instances, each written whole (temporary file, fsync, rename)
      results/<id>/*.dcm          # the series' result objects, made once (they keep their UIDs across restarts)
      out/<id>/*.dcm              # results kept here when the node has no --forward destination
      failed/<id>/reason.txt      # a series that could not be finished, with its instances/ and results/

A series that is sent leaves nothing behind but its journal rows.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from medlens.core.errors import InputError

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The folders of one spool (created when missing)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            for sub in ("incoming", "results", "out", "failed"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(self.root, f"cannot be used as a spool ({exc.strerror or exc})") from None

    def incoming(self, series_id: int) -> Path:
        return self.root / "incoming" / str(series_id)

    def results(self, series_id: int) -> Path:
        return self.root / "results" / str(series_id)

    def failed(self, series_id: int) -> Path:
        return self.root / "failed" / str(series_id)

    def out(self, series_id: int) -> Path:
        return self.root / "out" / str(series_id)

    def write_instance(self, series_id: int, sop_uid: str, data: bytes) -> Path:
        """Write one received instance durably: a temporary file, fsync, rename, fsync of the folder.

        Raises:
            ValueError: ``sop_uid`` is not a DICOM UID (it names the file).
        """
        if not UID_PATTERN.match(sop_uid) or len(sop_uid) > 64:
            raise ValueError(f"SOP Instance UID {sop_uid[:70]!r} is not a DICOM UID")
        folder = self.incoming(series_id)
        created = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sop_uid}.dcm"
        partial = folder / f".{sop_uid}.{os.getpid()}.{id(data)}.partial"
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        fsync_folder(folder)
        if created:
            fsync_folder(folder.parent)
        return target

    def instance_files(self, series_id: int) -> list[Path]:
        folder = self.incoming(series_id)
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def result_files(self, series_id: int) -> list[Path]:
        folder = self.results(series_id)
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def remove_partials(self) -> int:
        """Delete temporary files and folders left by a process that was killed; return how many."""
        count = 0
        for stale in [*self.root.glob("incoming/*/.*.partial"), *self.root.glob("results/*/.*.partial")]:
            stale.unlink(missing_ok=True)
            count += 1
        for stale in self.root.glob("results/.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
            count += 1
        return count

    def partial_results(self, series_id: int) -> Path:
        """A fresh temporary folder for results being made (renamed by :meth:`commit_results`)."""
        folder = self.root / "results" / f".{series_id}.partial"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def commit_results(self, series_id: int, folder: Path) -> list[Path]:
        """Make ``folder`` (from :meth:`partial_results`) the series' results, durably."""
        for path in folder.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        target = self.results(series_id)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(folder, target)
        fsync_folder(target.parent)
        return self.result_files(series_id)

    def discard(self, series_id: int) -> None:
        """Remove the series' instances and results (it is finished; the journal keeps its history)."""
        shutil.rmtree(self.incoming(series_id), ignore_errors=True)
        shutil.rmtree(self.results(series_id), ignore_errors=True)

    def keep_results(self, series_id: int) -> Path:
        """Move the results to ``out/<id>`` (no destination to send them to); the instances are removed."""
        target = self.out(series_id)
        if self.results(series_id).is_dir():
            shutil.rmtree(target, ignore_errors=True)
            os.replace(self.results(series_id), target)
        shutil.rmtree(self.incoming(series_id), ignore_errors=True)
        return target

    def fail(self, series_id: int, reason: str) -> Path:
        """Move the series' instances and results to ``failed/<id>/`` with ``reason.txt``."""
        target = self.failed(series_id)
        target.mkdir(parents=True, exist_ok=True)
        for name, source in (("instances", self.incoming(series_id)), ("results", self.results(series_id))):
            if source.is_dir():
                shutil.rmtree(target / name, ignore_errors=True)
                os.replace(source, target / name)
        tmp = target / ".reason.txt.partial"
        tmp.write_text(reason + "\n")
        os.replace(tmp, target / "reason.txt")
        return target

    def failure_reason(self, series_id: int) -> str | None:
        """The reason a series was moved to ``failed/`` (None when it was not)."""
        path = self.failed(series_id) / "reason.txt"
        return path.read_text().strip() if path.is_file() else None
