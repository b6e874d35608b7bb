"""``medlens keys``: a key is printed once and only its hash is stored; revoked keys stay listed; names are unique."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medlens.cli.main import main


def test_keys_add_prints_the_key_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "add", "radiology-pacs", "--keys", str(path)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("mlk_") and len(key) > 40 and key not in err  # stdout holds the key alone, once
    stored = path.read_text()
    assert key not in stored and hashlib.sha256(key.encode()).hexdigest() in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert main(["keys", "add", "radiology-pacs", "--keys", str(path)]) == 1  # a name is used once
    assert "already" in capsys.readouterr().err
    assert main(["keys", "add", "ward-tablet", "--keys", str(path)]) == 0
    other = capsys.readouterr().out.strip()
    assert other != key
    assert main(["keys", "list", "--keys", str(path)]) == 0
    listed = capsys.readouterr().out
    assert "radiology-pacs" in listed and "ward-tablet" in listed and key not in listed
    assert hashlib.sha256(key.encode()).hexdigest()[:12] not in listed


def test_keys_revoke_marks_the_key_and_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medlens.serve.keys import KeyRing

    path = tmp_path / "keys.json"
    assert main(["keys", "add", "alice", "--keys", str(path)]) == 0
    key = capsys.readouterr().out.strip()
    ring = KeyRing(path)
    assert ring.lookup(key).revoked is None  # type: ignore[union-attr]
    assert main(["keys", "revoke", "alice", "--keys", str(path)]) == 0
    assert ring.lookup(key).revoked  # type: ignore[union-attr]  # read again: the file changed
    assert json.loads(path.read_text())["keys"][0]["name"] == "alice"
    assert main(["keys", "revoke", "bob", "--keys", str(path)]) == 1
    assert ring.lookup("mlk_unknown") is None


def test_the_default_key_file_is_under_medlens_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDLENS_HOME", str(tmp_path / "home"))
    assert main(["keys", "add", "alice"]) == 0
    assert (tmp_path / "home" / "serve" / "keys.json").is_file()
    assert main(["keys", "list"]) == 0 and "alice" in capsys.readouterr().out


def test_a_damaged_key_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    assert main(["keys", "add", "alice", "--keys", str(path)]) == 1
    assert str(path) in capsys.readouterr().err
