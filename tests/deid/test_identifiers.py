"""The scan: no identifying value of any real input survives anywhere in any output file.

What counts as identifying is listed here independently of the profile table (by keyword and by value
representation), so a gap in the table shows up as a failure rather than being assumed away.

Names, IDs, UIDs and dates are searched as substrings of every output value (long enough ones); free text,
descriptions and institution names are compared as whole values, so "TOSHIBA" (an institution name in one
sample) does not match the kept Manufacturer "TOSHIBA_MEC". Code meanings are not scanned: they are a
coding scheme's words for a coded concept (a procedure code "US KIDNEY" repeats the study description), and
the profile keeps coded procedure and anatomy concepts as the standard does.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

from medlens.deid import deidentify

# Names, IDs, addresses, institution, physicians, accession, device identity, free text.
IDENTIFYING_KEYWORDS = {
    "PatientID", "OtherPatientIDs", "PatientName", "PatientBirthName", "PatientMotherBirthName",
    "PatientAddress", "PatientTelephoneNumbers", "IssuerOfPatientID", "AccessionNumber", "StudyID",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "PhysiciansOfRecord", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician", "RequestingService",
    "DeviceSerialNumber", "PerformedProcedureStepID", "RequestedProcedureID", "ScheduledProcedureStepID",
    "StudyDescription", "SeriesDescription", "ProtocolName", "PerformedProcedureStepDescription",
    "RequestedProcedureDescription", "MilitaryRank", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "ImageComments", "StudyComments", "MedicalRecordLocator", "CountryOfResidence",
    "RegionOfResidence", "PerformedLocation", "PerformedStationName", "PerformedStationAETitle",
}  # fmt: skip
IDENTIFYING_VRS = {"PN", "DA", "DT", "UI", "LT", "ST", "UT"}
MIN_LENGTH = 4  # shorter values ("M", "EG") are compared whole, never as substrings
SUBSTRING_LENGTH = 6


def _values(elem: pydicom.DataElement) -> list[str]:
    if elem.VM == 0 or elem.value is None:
        return []
    values = elem.value if elem.VM > 1 else [elem.value]
    out = []
    for value in values:
        text = str(value).strip()
        out.append(text)
        if elem.VR == "PN":
            out += [part.strip() for part in re.split(r"[\^=]", text) if part.strip()]
    return out


NOT_IDENTIFYING = {"ImplementationClassUID", "ImplementationVersionName"}  # the writing software
SUBSTRING_KEYWORDS = {
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "DeviceSerialNumber",
    "PerformedProcedureStepID", "RequestedProcedureID", "ScheduledProcedureStepID", "IssuerOfPatientID",
}  # fmt: skip
SUBSTRING_VRS = {"PN", "UI", "DA", "DT"}


def identifying_values(ds: Dataset) -> tuple[set[str], set[str]]:
    """Identifying values (searched as substrings, compared whole) of a dataset, nested items included."""
    substrings: set[str] = set()
    whole: set[str] = set()

    def visit(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            if elem.tag.is_private or elem.keyword in NOT_IDENTIFYING:
                continue
            if elem.keyword in IDENTIFYING_KEYWORDS or elem.VR in IDENTIFYING_VRS:
                target = substrings if elem.keyword in SUBSTRING_KEYWORDS or elem.VR in SUBSTRING_VRS else whole
                for value in _values(elem):
                    if len(value) >= MIN_LENGTH and value not in UID_dictionary:
                        target.add(value)

    visit(ds.file_meta)
    visit(ds)
    return substrings, whole


def output_text(ds: Dataset) -> tuple[list[str], set[str]]:
    """Every value of every element of an output (private and nested included), as text."""
    texts: list[str] = []
    whole: set[str] = set()

    def visit(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.tag in (0x7FE00010, 0x00080104):  # pixels; CodeMeaning (see the module docstring)
                continue
            if elem.keyword in NOT_IDENTIFYING:  # medlens writes pydicom's implementation UID here
                continue
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            if isinstance(elem.value, bytes):
                texts.append(elem.value.decode("latin-1"))
                continue
            for value in _values(elem):
                texts.append(value)
                whole.add(value)

    visit(ds.file_meta)
    visit(ds)
    return texts, whole


def read_inputs(root: Path) -> dict[str, Dataset]:
    datasets = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            continue
        if "SOPInstanceUID" in ds or "PatientID" in ds:
            datasets[path.relative_to(root).as_posix()] = ds
    return datasets


def leaks(out: Path, secrets_: tuple[set[str], set[str]]) -> list[tuple[str, str]]:
    substrings, whole_values = secrets_
    long_values = [v for v in substrings if len(v) >= SUBSTRING_LENGTH]
    found = []
    for path in sorted(out.rglob("*.dcm")):
        texts, whole = output_text(pydicom.dcmread(path))
        blob = "\x00".join(texts)
        found += [(path.name, v) for v in whole & (substrings | whole_values)]
        found += [(path.name, v) for v in long_values if v in blob and v not in whole]
    return found


@pytest.fixture(scope="module")
def input_secrets(dicom_root: Path) -> tuple[set[str], set[str]]:
    substrings: set[str] = set()
    whole: set[str] = set()
    for ds in read_inputs(dicom_root).values():
        sub, full = identifying_values(ds)
        substrings |= sub
        whole |= full
    return substrings, whole


def test_the_scan_finds_identifiers_in_the_inputs(input_secrets) -> None:
    # The check is only meaningful if it has something to look for: IDs, dates, UIDs, names, free text.
    substrings, whole = input_secrets
    assert {"1449c1d", "98edede8b2", "20090701"} <= substrings  # MR series: patient ID, accession, birth date
    assert any(v.startswith("1.3.12.2.1107.5.2.19.45152") for v in substrings)
    assert {"Institution", "MR-Brain w/o Contrast"} <= whole
    assert len(substrings) > 300


def test_no_identifier_of_any_input_in_any_output(full_run, input_secrets) -> None:
    report, out, _mapping = full_run
    assert report.written > 200
    assert leaks(out, input_secrets) == []


def test_no_identifier_survives_with_dates_shifted_and_characteristics_kept(
    dicom_root: Path, key_file: Path, other_key: Path, input_secrets, tmp_path: Path
) -> None:
    """Run with two keys: a date left unshifted (or any other identifier) is in both outputs, while a shifted date
    that happens to equal some other input date (one patient's shift landing on another's study date, a chance the
    random key gives) is in one only and is no leak."""
    found = []
    for key in (key_file, other_key):
        out = tmp_path / key.stem
        deidentify(dicom_root, out, key=key, keep_dates_shifted=True, keep_patient_characteristics=True, workers=2)
        found.append({value for _, value in leaks(out, input_secrets)})
    assert found[0] & found[1] == set()


def test_outputs_are_stamped_and_hold_no_private_tags(full_run) -> None:
    _report, out, _mapping = full_run
    for path in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert not any(elem.tag.is_private for elem in ds.iterall()), path
        assert ds.SOPInstanceUID.startswith("2.25.") and ds.SOPInstanceUID.is_valid
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_output_names_carry_no_identifier(full_run, dicom_root: Path) -> None:
    _report, out, _mapping = full_run
    input_names = {part for p in dicom_root.rglob("*") for part in p.relative_to(dicom_root).parts}
    output_names = {part for p in out.rglob("*") for part in p.relative_to(out).parts}
    assert not input_names & output_names


def test_references_inside_sequences_follow_the_remapped_uids(full_run) -> None:
    _report, out, _mapping = full_run
    series = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    mr = [ds for ds in series if ds.get("SeriesDescription") is None and ds.Modality == "MR" and ds.Rows == 256]
    sop_uids = {ds.SOPInstanceUID for ds in series}
    referenced = {item.ReferencedSOPInstanceUID for ds in mr for item in ds.get("ReferencedImageSequence", [])}
    assert referenced and all(uid.startswith("2.25.") for uid in referenced)
    # The localisers these slices reference are not in the data set; their UIDs are remapped all the same.
    assert referenced.isdisjoint({"", None})
    assert len({ds.FrameOfReferenceUID for ds in mr}) == 1
    assert len({ds.StudyInstanceUID for ds in mr}) == 1
    assert sop_uids


def test_mapping_is_written_apart_and_lists_pseudonyms(full_run) -> None:
    _report, out, mapping = full_run
    assert mapping.is_file() and out not in mapping.parents
    with open(mapping) as handle:
        rows = list(csv.DictReader(handle))
    patients = {row["original"]: row["pseudonym"] for row in rows if row["kind"] == "patient_id"}
    assert patients["id:1449c1d"].startswith("P")
