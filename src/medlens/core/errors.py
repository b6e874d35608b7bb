"""Errors that reach the user: each names the file or key and the problem, in one line."""

from __future__ import annotations

import re
from pathlib import Path


class MedlensError(Exception):
    """Base class of every error medlens raises on purpose; the CLI prints it as one line."""


class InputError(MedlensError):
    """A file or folder given to medlens cannot be used.

    Args:
        path: the offending file or folder.
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = one_line(problem)
        super().__init__(f"{path}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses process boundaries (worker pools) intact
        return (type(self), (str(self.path), self.problem))


class ConfigError(MedlensError):
    """A configuration key or value (plan, dataset.yaml, --set) is unknown or invalid."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = one_line(problem)
        super().__init__(f"{key}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.key, self.problem))


class Interrupted(BaseException):
    """The process was asked to stop (SIGINT, SIGTERM). A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it; unlike KeyboardInterrupt, libraries that treat Ctrl-C their own way (Typer
    turns it into a silent exit code, Lightning into ``sys.exit(1)``) let it through to the command line."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (type(self), (self.signum,))


def one_line(text: str) -> str:
    """``text`` as one line of plain text: a library's multi-line message (nibabel's, pydicom's) joined with
    spaces, terminal colour codes (torch's) removed."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    return " ".join(line.strip() for line in plain.splitlines() if line.strip())


class RemoteError(MedlensError):
    """A remote service (a DICOMweb server, a DICOM node) refused or failed a request.

    Args:
        where: the service (a URL, or ``AE@HOST:PORT``).
        problem: what went wrong, in one line (the status, the server's reason).
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = one_line(problem)
        super().__init__(f"{where}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.where, self.problem))
