"""API keys: a key is shown once when it is made; the key file keeps only its SHA-256, its name and its state.

A key is 32 random bytes (``secrets``), so a plain SHA-256 of it cannot be reversed or guessed; a slow password
hash would only slow every request down. The service reads the key file again whenever it changes on disk, so a
key revoked with ``medlens keys revoke`` is refused (403) from the next request on, without a restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import write_json

KEY_PREFIX = "mlk_"
FORMAT = "medlens-keys/1"


@dataclass(frozen=True)
class KeyRecord:
    """One key as the key file holds it (never the key itself)."""

    name: str
    sha256: str
    created: str
    revoked: str | None = None


def key_hash(key: str) -> str:
    """The SHA-256 (hex) the key file stores for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_keys(path: Path) -> dict[str, KeyRecord]:
    """The keys in ``path`` by name (none when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable key file ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("keys"), list):
        raise InputError(path, f"not a medlens key file (format {FORMAT})")
    records: dict[str, KeyRecord] = {}
    for item in raw["keys"]:
        try:
            record = KeyRecord(**item)
        except TypeError:
            raise InputError(path, f"a key entry has unexpected fields: {sorted(item)}") from None
        records[record.name] = record
    return records


def _write(path: Path, records: dict[str, KeyRecord]) -> None:
    write_json(path, {"format": FORMAT, "keys": [vars(r) for r in records.values()]})
    os.chmod(path, 0o600)


def add_key(path: Path, name: str) -> str:
    """Make a key named ``name``, store its hash in ``path``, and return the key (shown to the user once).

    Raises:
        ConfigError: the name is empty, too long, or already used in this file.
    """
    name = name.strip()
    if not name or len(name) > 200 or any(c in name for c in "\r\n\t"):
        raise ConfigError("NAME", f"{name!r} is not a key name (1 to 200 characters on one line)")
    records = read_keys(path)
    if name in records:
        raise ConfigError("NAME", f"a key named {name!r} is already in {path} (revoke it, or choose another name)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    records[name] = KeyRecord(name=name, sha256=key_hash(key), created=now)
    _write(path, records)
    return key


def revoke_key(path: Path, name: str) -> KeyRecord:
    """Mark the key ``name`` revoked (kept in the file, so its calls stay attributable in the audit trail)."""
    records = read_keys(path)
    if name not in records:
        raise ConfigError("NAME", f"no key named {name!r} in {path}")
    record = records[name]
    if record.revoked is None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        record = records[name] = KeyRecord(record.name, record.sha256, record.created, now)
        _write(path, records)
    return record


class KeyRing:
    """The keys of a running service, read again from the file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, KeyRecord] = {}
        self._lock = Lock()
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return
        with self._lock:
            self._by_hash = {r.sha256: r for r in read_keys(self.path).values()}
            self._stamp = stamp

    def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key``, or None for a key this service does not know."""
        self._reload()
        digest = key_hash(key)
        for known, record in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return record
        return None

    def __len__(self) -> int:
        return len(self._by_hash)


def describe(records: dict[str, KeyRecord]) -> list[dict[str, Any]]:
    """Rows for ``medlens keys list`` (no hash shown)."""
    return [{"name": r.name, "created": r.created, "revoked": r.revoked or ""} for r in records.values()]
