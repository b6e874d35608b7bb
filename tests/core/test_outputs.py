"""Safe outputs (medlens.core.outputs): whole or nothing, never at the cost of a user's files, strict JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from medlens.core.errors import InputError
from medlens.core.outputs import (
    MARKER,
    atomic_file,
    check_output_folder,
    json_text,
    output_folder,
    write_json,
)


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_new_folder_appears_whole_with_its_marker(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with output_folder(out, kind="test") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not out.exists()  # nothing at the target until the block ends
    assert (out / "a.txt").read_text() == "a"
    assert json.loads((out / MARKER).read_text())["kind"] == "test"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # no temporary left beside it


def test_a_failed_block_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with pytest.raises(RuntimeError), output_folder(out, kind="test") as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_result(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with output_folder(out, kind="test") as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), output_folder(out, kind="test", overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "old.txt"]


def test_overwrite_replaces_only_a_marked_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    with output_folder(mine, kind="test") as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(InputError, match="not empty"):
        check_output_folder(mine)
    with output_folder(mine, kind="test", overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in mine.iterdir()) == [MARKER, "new.txt"]

    users = tmp_path / "users"
    users.mkdir()
    (users / "scan.dcm").write_bytes(b"precious")
    with pytest.raises(InputError, match="not made by medlens"):
        check_output_folder(users, overwrite=True)
    assert (users / "scan.dcm").read_bytes() == b"precious"


def test_an_empty_folder_is_used_and_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output_folder(tmp_path / "file", overwrite=True)


@pytest.mark.parametrize("where", ["same", "inside", "holding"])
def test_an_output_tied_to_an_input_is_refused(tmp_path: Path, where: str) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.dcm").write_bytes(b"a")
    target = {"same": scans, "inside": scans / "out", "holding": tmp_path}[where]
    with pytest.raises(InputError, match="input") as info:
        check_output_folder(target, overwrite=True, inputs=[("input", scans)])
    assert str(target) in str(info.value)
    assert (scans / "a.dcm").read_bytes() == b"a"


def test_a_symlinked_input_is_recognised(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    os.symlink(scans, tmp_path / "link")
    with pytest.raises(InputError, match="inside"):
        check_output_folder(tmp_path / "link" / "out", inputs=[("input", scans)])


def test_atomic_file_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with atomic_file(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_json_is_strict(tmp_path: Path) -> None:
    value = {"nan": float("nan"), "inf": math.inf, "np": np.float32("nan"), "ok": np.float64(0.5), "list": [-math.inf]}
    parsed = _strict(json_text(value))
    assert parsed == {"nan": None, "inf": None, "np": None, "ok": 0.5, "list": [None]}
    write_json(tmp_path / "m.json", value)
    assert _strict((tmp_path / "m.json").read_text()) == parsed
    with pytest.raises(ValueError, match="NaN"):
        _strict(json.dumps({"x": float("nan")}))  # the checker itself refuses Python's bare NaN


def test_an_output_file_is_never_an_input_nor_inside_one(tmp_path: Path) -> None:
    from medlens.core.outputs import check_output_file

    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"scan")
    with pytest.raises(InputError, match="input"):
        check_output_file(scan, overwrite=True, inputs=[("input", scan)])
    with pytest.raises(InputError, match="input"):
        check_output_file(tmp_path / "out.nrrd", inputs=[("input", tmp_path)])
    with pytest.raises(InputError, match="--overwrite"):
        check_output_file(scan)
    check_output_file(scan, overwrite=True)  # the user's word, for a file that is not an input
    check_output_file(tmp_path / "new.nrrd", inputs=[("input", scan)])
