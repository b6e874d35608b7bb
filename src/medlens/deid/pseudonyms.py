"""Keyed, consistent pseudonyms: the same input and key give the same output in every file and run.

Every replacement is an HMAC-SHA256 of the original value under the site key, so studies of one patient
exported in several batches still join, while nobody without the key can recompute (or dictionary-attack)
the mapping. Written by hand: HMAC from the standard library is all it needs, and neither pydicom nor
dicognito offers a keyed scheme (dicognito seeds a random generator instead).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medlens.core.errors import ConfigError, InputError

_MIN_KEY_BYTES = 16
#: Date shifts are between 1 and this many days into the past.
MAX_SHIFT_DAYS = 3650


def key_location(path: str | Path | None, *, default_dir: Path) -> Path:
    """The key file a run uses: ``path``, or the default one in ``default_dir`` (which may not exist yet)."""
    return default_dir / "key" if path is None else Path(path)


def key_fingerprint(key: bytes) -> str:
    """Names a key without revealing it: HMAC-SHA256 of a fixed text under the key, in hex."""
    return hmac.new(key, b"medlens deid key fingerprint", hashlib.sha256).hexdigest()


def load_key(path: str | Path | None, *, default_dir: Path) -> tuple[bytes, Path]:
    """Read the key file, or create the default one (``MEDLENS_HOME/deid/key``) on first use.

    Returns:
        The key bytes and the file they came from.
    """
    key_path = key_location(path, default_dir=default_dir)
    if path is None:
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    elif not key_path.is_file():
        raise InputError(key_path, "key file not found")
    key = key_path.read_bytes().strip()
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigError(f"key file {key_path}", f"holds {len(key)} bytes; use at least {_MIN_KEY_BYTES}")
    return key, key_path


class Pseudonymizer:
    """Makes keyed replacements and, when asked, remembers original -> pseudonym pairs.

    Args:
        key: the secret key.
        record: keep a mapping of every replacement (for ``--mapping``).

    Example:
        >>> p = Pseudonymizer(b"0123456789abcdef")
        >>> p.uid("1.2.3") == p.uid("1.2.3") and p.uid("1.2.3").startswith("2.25.")
        True
    """

    def __init__(self, key: bytes, record: bool = False) -> None:
        self._key = key
        self.record = record
        self.mapping: dict[tuple[str, str], str] = {}
        self._uid_cache: dict[str, str] = {}

    def digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def remember(self, kind: str, original: str, pseudonym: str) -> str:
        if self.record:
            self.mapping[(kind, original)] = pseudonym
        return pseudonym

    def uid(self, original: str) -> str:
        """A valid UID under the 2.25 root (PS3.5 B.2): 2.25. + a 128-bit integer from the HMAC."""
        cached = self._uid_cache.get(original)
        if cached is None:
            cached = "2.25." + str(int.from_bytes(self.digest("uid", original)[:16], "big"))
            if len(self._uid_cache) > 100_000:  # bounded: memory stays flat over long runs
                self._uid_cache.clear()
            self._uid_cache[original] = cached
        return self.remember("uid", original, cached) if self.record else cached

    def text(self, kind: str, original: str, length: int = 16) -> str:
        """An upper-case hex pseudonym of ``length`` characters (valid for CS, SH, LO, PN, AE)."""
        return self.remember(kind, original, self.digest(kind, original).hex()[:length].upper())

    def patient_id(self, original: str) -> str:
        return self.remember("patient_id", original, "P" + self.digest("patient", original).hex()[:19].upper())

    def shift_days(self, patient: str) -> int:
        """Days to move every date of this patient back: constant per patient and key."""
        days = 1 + int.from_bytes(self.digest("dateshift", patient)[:4], "big") % MAX_SHIFT_DAYS
        return int(self.remember("date_shift_days", patient, str(days)))

    def name(self, kind: str, original: str, length: int = 20) -> str:
        """A file or folder name that carries no identifier."""
        return self.remember(kind, original, self.digest(kind, original).hex()[:length])


def shift_date(value: str, days: int) -> str:
    """Move a DA value (or a DA range ``a-b``) back by ``days``; unparsable parts become empty."""
    parts = value.split("-")
    out = []
    for part in parts:
        part = part.strip()
        try:
            day = dt.datetime.strptime(part, "%Y%m%d").date()
        except ValueError:
            out.append("")
            continue
        out.append((day - dt.timedelta(days=days)).strftime("%Y%m%d"))
    return "-".join(out)


def shift_datetime(value: str, days: int) -> str:
    """Move the date part of a DT value back by ``days``, keeping time and offset."""
    value = value.strip()
    if len(value) < 8:
        return ""
    shifted = shift_date(value[:8], days)
    return shifted + value[8:] if shifted else ""
