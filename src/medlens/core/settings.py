"""The one place the environment is read (DESIGN.md: "Environment is read in one place")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where medlens finds data and keeps its own files.

    Attributes:
        data_root: the root of shared real data (``MEDLENS_DATA``), or None when unset.
        home: runs, caches and downloads (``MEDLENS_HOME``, default ``~/.medlens``).
    """

    data_root: Path | None
    home: Path

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


def get_settings() -> Settings:
    """Read the settings from the environment, now (tests may change the environment between calls)."""
    data = os.environ.get("MEDLENS_DATA")
    home = os.environ.get("MEDLENS_HOME")
    return Settings(
        data_root=Path(data).expanduser() if data else None,
        home=Path(home).expanduser() if home else Path.home() / ".medlens",
    )
