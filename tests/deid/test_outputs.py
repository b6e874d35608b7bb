"""Where a run writes: quarantine and mapping apart from the input and OUT, no file overwritten without a flag,
one set of settings per OUT, and an output that cannot be written is an error about the output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from medlens.core.errors import InputError
from medlens.deid import deidentify
from medlens.deid.pseudonyms import Pseudonymizer
from medlens.deid.worker import output_relpath


def _digest(folder: Path) -> str:
    """Names and bytes of every file under ``folder`` (hidden ones too)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _nothing_written(out: Path, quarantine: Path | None = None) -> bool:
    folders = [out, quarantine or out.with_name(out.name + "-quarantine")]
    return not any(f.exists() and any(f.iterdir()) for f in folders)


# --- quarantine ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["out", "inside out", "inside input", "contains input", "contains out"],
)
def test_quarantine_must_lie_apart_from_input_and_out(
    where: str, dicom_root: Path, key_file: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    shutil.copytree(dicom_root / "deid_data", src)
    out = tmp_path / "work" / "out"
    quarantine = {
        "out": out,
        "inside out": out / "quarantine",
        "inside input": src / "quarantine",
        "contains input": tmp_path,
        "contains out": tmp_path / "work",
    }[where]
    before = _digest(src)
    with pytest.raises(InputError, match="quarantine"):
        deidentify(src, out, key=key_file, reject_burned_in=True, quarantine=quarantine, workers=1)
    assert _nothing_written(out) and _digest(src) == before
    assert not list(tmp_path.rglob("*.dcm.*")) and len(list(tmp_path.rglob("*.dcm"))) == 4


def test_quarantine_apart_is_used(dicom_root: Path, key_file: Path, tmp_path: Path) -> None:
    quarantine = tmp_path / "held"
    report = deidentify(dicom_root / "deid_data", tmp_path / "out", key=key_file, reject_burned_in=True,
                        quarantine=quarantine, workers=1)  # fmt: skip
    assert report.quarantined == 4 and len(list(quarantine.rglob("*.dcm"))) == 4
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_quarantine_that_is_a_file_is_refused(dicom_root: Path, key_file: Path, tmp_path: Path) -> None:
    held = tmp_path / "held"
    held.write_text("mine")
    with pytest.raises(InputError, match="quarantine"):
        deidentify(dicom_root / "deid_data", tmp_path / "out", key=key_file, reject_burned_in=True,
                   quarantine=held, workers=1)  # fmt: skip
    assert held.read_text() == "mine" and _nothing_written(tmp_path / "out")


# --- mapping ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["an input file", "a new file inside the input", "the key", "inside out",
                                   "inside the quarantine", "the output folder"])  # fmt: skip
def test_mapping_never_lands_in_input_out_or_key(where: str, small_input: Path, key_file: Path, tmp_path: Path) -> None:
    key = tmp_path / "site.key"
    shutil.copy(key_file, key)
    out = tmp_path / "out"
    mapping = {
        "an input file": small_input / "mr" / sorted(os.listdir(small_input / "mr"))[0],
        "a new file inside the input": small_input / "mapping.csv",
        "the key": key,
        "inside out": out / "mapping.csv",
        "inside the quarantine": tmp_path / "out-quarantine" / "mapping.csv",
        "the output folder": out,
    }[where]
    before, key_before = _digest(small_input), key.read_bytes()
    with pytest.raises(InputError, match="mapping"):
        deidentify(small_input, out, key=key, mapping=mapping, overwrite_mapping=True, workers=1)
    assert _digest(small_input) == before and key.read_bytes() == key_before
    assert _nothing_written(out)


def test_mapping_is_never_the_default_key(small_input: Path, tmp_path: Path) -> None:
    from medlens.core.settings import get_settings

    default_key = get_settings().home / "deid" / "key"
    deidentify(small_input / "mr", tmp_path / "first", workers=1)  # creates the default key
    key_before = default_key.read_bytes()
    with pytest.raises(InputError, match="mapping"):
        deidentify(small_input, tmp_path / "out", mapping=default_key, overwrite_mapping=True, workers=1)
    assert default_key.read_bytes() == key_before


def test_existing_mapping_needs_the_flag(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("somebody else's table\n")
    with pytest.raises(InputError, match="overwrite"):
        deidentify(small_input, tmp_path / "out", key=key_file, mapping=mapping, workers=1)
    assert mapping.read_text() == "somebody else's table\n" and _nothing_written(tmp_path / "out")
    report = deidentify(small_input, tmp_path / "out", key=key_file, mapping=mapping, overwrite_mapping=True)
    assert report.mapping_file == str(mapping.resolve())
    assert mapping.read_text().startswith("kind,original,pseudonym")


def test_key_inside_out_or_quarantine_is_refused(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    """The key would travel with the de-identified data and undo the pseudonyms."""
    for folder in (tmp_path / "out", tmp_path / "out-quarantine"):
        folder.mkdir()
        key = shutil.copy(key_file, folder / "site.key")
        with pytest.raises(InputError, match="key file"):
            deidentify(small_input, tmp_path / "out", key=key, workers=1)
        assert [p.name for p in folder.iterdir()] == ["site.key"]
        shutil.rmtree(folder)


# --- one set of settings per OUT ----------------------------------------------------------------------


def _interrupted_run(src: Path, out: Path, key: Path, files: int = 4, **options) -> int:
    seen = []

    def stop(result) -> None:
        seen.append(result)
        if len(seen) == files:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deidentify(src, out, key=key, on_file=stop, workers=1, **options)
    return len(list(out.rglob("*.dcm")))


def test_settings_are_recorded_without_the_key(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    deidentify(small_input / "mr", out, key=key_file, keep_dates_shifted=True, workers=1)
    record = json.loads((out / ".medlens-deid.json").read_text())
    assert record["keep_dates_shifted"] is True and record["keep_patient_characteristics"] is False
    assert record["reject_burned_in"] is False and record["profile"] == "basic"
    text = (out / ".medlens-deid.json").read_text()
    key = key_file.read_bytes().strip()
    assert key.decode() not in text and key.hex() not in text
    assert len(record["key_fingerprint"]) >= 16


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"key": "other"}, "key"),
        ({"keep_dates_shifted": True}, "--keep-dates-shifted"),
        ({"keep_patient_characteristics": True}, "--keep-patient-characteristics"),
        ({"keep_device_identity": True}, "--keep-device-identity"),
        ({"reject_burned_in": True}, "--reject-burned-in"),
        ({"profile": "site"}, "profile"),
    ],
)
def test_other_settings_into_the_same_out_are_refused(
    change: dict, named: str, small_input: Path, key_file: Path, other_key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    written = _interrupted_run(small_input, out, key_file)
    assert 0 < written < 12
    before = _digest(out)
    site = tmp_path / "site.yaml"
    site.write_text("extends: basic\nactions: {Manufacturer: X}\n")
    options = dict(change)
    if options.get("key") == "other":
        options["key"] = other_key
    if options.get("profile") == "site":
        options["profile"] = site
    options.setdefault("key", key_file)
    with pytest.raises(InputError, match=named) as caught:
        deidentify(small_input, out, workers=1, **options)
    assert "\n" not in str(caught.value) and str(out) in str(caught.value)
    assert _digest(out) == before  # nothing added, nothing mixed
    report = deidentify(small_input, out, key=key_file, workers=1)  # the same settings resume as before
    assert report.already_done == written and report.written == 12 - written


def test_edited_site_profile_is_a_different_profile(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("extends: basic\nactions: {Manufacturer: X}\n")
    out = tmp_path / "out"
    _interrupted_run(small_input, out, key_file, profile=site)
    site.write_text("extends: basic\nactions: {Manufacturer: K}\n")
    with pytest.raises(InputError, match="profile"):
        deidentify(small_input, out, key=key_file, profile=site, workers=1)


def test_a_folder_that_is_not_a_deid_output_is_refused(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        deidentify(small_input, out, key=key_file, workers=1)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert deidentify(small_input, empty, key=key_file, workers=1).written == 12


# --- an output that cannot be written -----------------------------------------------------------------


def test_out_that_is_a_file_is_an_output_error(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(InputError, match="not a folder") as caught:
        deidentify(small_input, out, key=key_file, workers=1)
    assert caught.value.path == out
    with pytest.raises(InputError) as caught:
        deidentify(small_input, out / "below", key=key_file, workers=1)
    assert caught.value.path == out / "below" and "unreadable" not in str(caught.value)
    assert out.read_text() == "a file"


def test_out_in_a_read_only_folder_is_an_output_error(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes into read-only folders; the kernel's /sys refuses new folders even to root
        parent = Path("/sys")
        with pytest.raises(InputError) as caught:
            deidentify(small_input, parent / f"medlens-{tmp_path.name}", key=key_file, workers=1)
        assert caught.value.path == parent / f"medlens-{tmp_path.name}" and "unreadable" not in str(caught.value)
        return
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(InputError) as caught:
            deidentify(small_input, parent / "out", key=key_file, workers=1)
    finally:
        parent.chmod(0o755)
    assert caught.value.path == parent / "out" and "unreadable" not in str(caught.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_write_that_fails_mid_run_is_an_output_error(
    workers: int, small_input: Path, key_file: Path, tmp_path: Path
) -> None:
    """A file where an output folder must go: even root cannot write there (a full disk behaves alike)."""
    out = tmp_path / "out"
    deidentify(small_input / "mr", out, key=key_file, workers=1)  # a real OUT with its settings record
    blocked = output_relpath(Pseudonymizer(key_file.read_bytes().strip()), "other/ctbrain1.dcm").split("/")[0]
    (out / blocked).write_text("in the way")
    with pytest.raises(InputError, match="cannot write") as caught:
        deidentify(small_input, out, key=key_file, workers=workers)
    assert str(out / blocked) in str(caught.value) and "unreadable" not in str(caught.value)
    assert not list(out.rglob("*.partial"))
