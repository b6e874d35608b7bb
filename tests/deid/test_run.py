"""Run behaviour: consistency by key, resuming, bad input accounted for, quarantine, blanking, mapping."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest

from medlens.core.errors import ConfigError, InputError
from medlens.deid import deidentify, load_profile


def _uids(out: Path) -> dict[str, tuple[str, str, str]]:
    result = {}
    for path in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        result[path.relative_to(out).as_posix()] = (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.PatientID)
    return result


def test_every_input_is_accounted_for(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    report = deidentify(small_input, tmp_path / "out", key=key_file)
    assert report.total == 15
    assert report.written == 12 and report.skipped == 3 and report.quarantined == 0
    assert report.written + report.quarantined + report.skipped + report.already_done == report.total
    reasons = dict(report.skipped_files)
    assert reasons["other/notes.txt"].startswith("not DICOM")
    assert reasons["other/cut.dcm"].startswith("truncated")
    assert reasons["other/empty.dcm"].startswith(("not DICOM", "truncated", "unreadable"))
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 12


def test_input_is_never_modified(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    def digest() -> str:
        return hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted(small_input.rglob("*")) if p.is_file())
        ).hexdigest()

    before = digest()
    deidentify(small_input, tmp_path / "out", key=key_file, keep_dates_shifted=True)
    assert digest() == before


def test_same_key_same_pseudonyms_other_key_different(
    small_input: Path, key_file: Path, other_key: Path, tmp_path: Path
) -> None:
    first = _uids(deidentify(small_input, tmp_path / "a", key=key_file).out and tmp_path / "a")
    second = _uids(deidentify(small_input, tmp_path / "b", key=key_file, workers=2).out and tmp_path / "b")
    assert first == second  # same names, same UIDs, same patient pseudonym, across runs and worker counts
    other = _uids(deidentify(small_input, tmp_path / "c", key=other_key).out and tmp_path / "c")
    assert set(other).isdisjoint(first)
    assert {v[0] for v in other.values()}.isdisjoint(v[0] for v in first.values())
    patients = {v[2] for v in first.values()}
    assert len(patients) == 2  # the MR patient and the CT patient stay apart
    studies = {v[1] for v in first.values()}
    # 11, not 12: the two CT samples share one SOP Instance UID in the originals, and keep sharing it.
    assert len({v[0] for v in first.values()}) == 11 and len(studies) >= 2


def test_dates_shift_is_constant_per_patient(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    import datetime as dt

    deidentify(small_input / "mr", tmp_path / "out", key=key_file, keep_dates_shifted=True)
    shifts = set()
    for path in (tmp_path / "out").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientBirthDate == ""  # Z in the table, no option keeps it
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        shifts.add((dt.date(2013, 3, 8) - dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()).days)
    assert len(shifts) == 1 and 1 <= shifts.pop() <= 3650


def test_options_keep_what_they_promise(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    deidentify(small_input / "mr", tmp_path / "basic", key=key_file)
    deidentify(small_input / "mr", tmp_path / "kept", key=key_file, keep_patient_characteristics=True,
               keep_device_identity=True)  # fmt: skip
    basic = pydicom.dcmread(next((tmp_path / "basic").rglob("*.dcm")))
    kept = pydicom.dcmread(next((tmp_path / "kept").rglob("*.dcm")))
    assert "PatientAge" not in basic and basic.PatientSex == ""
    assert kept.PatientAge == "003Y" and kept.PatientSex == "M" and kept.PatientWeight == 20.8
    assert kept.DeviceSerialNumber == "45152" and kept.StationName == "AWP45152"
    assert basic.get("DeviceSerialNumber") != "45152"


def test_rerun_after_an_interrupted_run_finishes_the_rest(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen = []

    def interrupt_after_five(result) -> None:
        seen.append(result)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deidentify(small_input, out, key=key_file, on_file=interrupt_after_five)
    (out / "mr" / ".leftover.partial").parent.mkdir(parents=True, exist_ok=True)
    (out / "mr" / ".leftover.partial").write_bytes(b"half a file")  # as a killed writer would leave
    written_before = len(list(out.rglob("*.dcm")))
    assert 0 < written_before < 12
    report = deidentify(small_input, out, key=key_file)
    assert report.already_done == written_before
    assert report.written == 12 - written_before and report.skipped == 3
    assert not list(out.rglob("*.partial"))
    complete = _uids(out)
    assert len(complete) == 12
    assert complete == _uids(deidentify(small_input, tmp_path / "fresh", key=key_file).out and tmp_path / "fresh")


def test_reject_burned_in_quarantines(dicom_root: Path, key_file: Path, tmp_path: Path) -> None:
    report = deidentify(dicom_root / "deid_data", tmp_path / "out", key=key_file, reject_burned_in=True)
    assert report.quarantined == 4 and report.written == 0
    assert dict(report.quarantined_files)["GREYSCALE_IMAGE.dcm"] == "BurnedInAnnotation is YES"
    assert len(list((tmp_path / "out-quarantine").rglob("*.dcm"))) == 4
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_site_profile_blanks_pixels_and_overrides(dicom_root: Path, key_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(dicom_root / "deid_data" / "GREYSCALE_IMAGE.dcm", src)
    original = pydicom.dcmread(src / "GREYSCALE_IMAGE.dcm")
    site = tmp_path / "site.yaml"
    site.write_text(
        "extends: basic\n"
        "actions: {Manufacturer: X}\n"
        "pixel_blanking:\n"
        "  - name: top band\n"
        f"    match: {{Modality: US, Rows: {original.Rows}, Columns: {original.Columns}}}\n"
        "    regions: [[0, 0, 10000, 60]]\n"
    )
    report = deidentify(src, tmp_path / "out", key=key_file, profile=site, reject_burned_in=True)
    assert report.written == 1 and report.quarantined == 0
    assert report.blanked_files == [("GREYSCALE_IMAGE.dcm", "top band")]
    ds = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert "Manufacturer" not in ds and ds.BurnedInAnnotation == "NO"
    assert "113101" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    pixels = ds.pixel_array  # (rows, cols) or (rows, cols, samples) or with frames first
    rows_axis = pixels.ndim - (3 if ds.SamplesPerPixel > 1 else 2)
    top = pixels.take(range(60), axis=rows_axis)
    rest = pixels.take(range(60, ds.Rows), axis=rows_axis)
    assert (top == 0).all() and (rest != 0).any()


def test_site_profile_is_validated(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("extends: basic\nremove_everything: true\n")
    with pytest.raises(ConfigError, match="remove_everything"):
        load_profile(bad_key)
    bad_action = tmp_path / "bad_action.yaml"
    bad_action.write_text("actions: {PatientID: Q}\n")
    with pytest.raises(ConfigError, match="unknown action"):
        load_profile(bad_action)


def test_mapping_file_only_when_asked_and_never_in_out(small_input: Path, key_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = deidentify(small_input, out, key=key_file)
    assert report.mapping_file is None and not list(out.rglob("*.csv"))
    with pytest.raises(InputError, match="mapping"):
        deidentify(small_input, out, key=key_file, mapping=out / "map.csv")
    with pytest.raises(InputError, match="inside"):
        deidentify(small_input, small_input / "out", key=key_file)


def test_ctrl_c_swallowed_by_a_library_still_stops_the_run(
    small_input: Path, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydicom turns any exception while reading a sequence item into OSError (a skipped file): Ctrl-C too."""
    import os
    import signal
    import time

    import medlens.deid.worker

    real_read, calls = medlens.deid.worker.read_dicom, []

    def read_like_pydicom(path: Path):
        calls.append(path)
        if len(calls) == 3:
            try:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C to this process
                time.sleep(5)
            except BaseException:  # pydicom filereader.read_sequence_item does exactly this
                raise medlens.deid.worker.Skipped("unreadable: OSError: No tag to read") from None
        return real_read(path)

    monkeypatch.setattr(medlens.deid.worker, "read_dicom", read_like_pydicom)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any Python process not in nohup
    try:
        with pytest.raises(KeyboardInterrupt):
            deidentify(small_input, tmp_path / "out", key=key_file, workers=1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the run
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 3  # stopped after the file in hand, not at the end of the run
