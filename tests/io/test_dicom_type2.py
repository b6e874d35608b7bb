"""Type 2 attributes a real source lacks are supplied empty in the DICOM SEG and Secondary Capture written on it.

Archives de-identified by other tools often drop Type 2 attributes (PatientBirthDate, StudyID, ...) instead of
emptying them. The tests take real series of several vendors and modalities, strip such attributes from copies
in ``tmp_path`` (one at a time and all together), write a SEG and Secondary Captures, and check that the writers
do not fail, that dciodvfy (dicom3tools) finds no error the source did not already have, that every stripped
attribute is present and empty in the output, and that every attribute the source has is copied unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    Comprehensive3DSRStorage,
    EnhancedSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    generate_uid,
)

from medlens.io import find_series, read_image, write_image
from medlens.io.dicom_seg import write_dicom_seg
from medlens.io.dicom_tags import IDENTIFIER_TAGS
from medlens.io.dicom_type2 import type2_keywords, with_type2_attributes

# Typed from the standard, not derived from the code under test: the Type 2 attributes of the Patient module
# (PS3.3 C.7.1.1) and the General Study module (C.7.2.1), which every SEG, SR and Secondary Capture carries.
PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
# Also Type 2 in real sources, but the output does not take them over as they are: the output's own
# Manufacturer (General Equipment, C.7.5.1) is medlens, the source's goes to the contributing equipment; the
# SEG's Position Reference Indicator (Frame of Reference, C.7.4.1) is the source's.
STRIPPED = (*PATIENT_STUDY_TYPE2, "Manufacturer", "PositionReferenceIndicator")
ACQUISITION_EQUIPMENT = "109101"  # DCM code of the contributing equipment item for the source's acquisition

TESTDATA = Path("dicom") / "pydicom_testdata"
SOURCES = {  # name: a real series under MEDLENS_DATA (the Siemens one is cropped, see _siemens_crop)
    "siemens-mr": Path("dicom") / "sag_anon_mr_t1_series",
    "ge-ct": TESTDATA / "dicomdirtests" / "98892001" / "CT5N",  # 5 slices
    "ge-ct-small": TESTDATA / "CT_small.dcm",
    "toshiba-mr": TESTDATA / "MR_small.dcm",
    "philips-mr": TESTDATA / "dicomdirtests" / "98892003" / "MR700" / "4467",
}


def _siemens_crop(source: Path, out: Path) -> None:
    """8 slices of the real sagittal MR series cropped to 32 x 40 pixels, with new series UIDs.

    As ``tests/segmentation/conftest.py``'s ``mr_crop``: rows, columns, pixels and each slice's position are
    rewritten together, so the crop is a consistent series."""
    headers = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in sorted(source.glob("*.dcm"))]
    headers.sort(key=lambda item: int(item[1].InstanceNumber))
    r0, c0, rows, cols = 100, 96, 32, 40
    series, frame = generate_uid(), generate_uid()
    for path, _ in headers[88:96]:
        ds = pydicom.dcmread(path)
        row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3]), np.array(ds.ImageOrientationPatient[3:])
        between_rows, between_cols = (float(v) for v in ds.PixelSpacing)
        corner = (
            np.array(ds.ImagePositionPatient, dtype=float) + row_dir * c0 * between_cols + col_dir * r0 * between_rows
        )
        ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
        ds.PixelData = ds.pixel_array[r0 : r0 + rows, c0 : c0 + cols].copy().tobytes()
        ds.Rows, ds.Columns = rows, cols
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out / f"{int(ds.InstanceNumber):04d}.dcm", enforce_file_format=True)


def dciodvfy_errors(dciodvfy: str, path: Path) -> set[str]:
    """dciodvfy's error lines for a file, with values and UIDs blanked so that lines of two files compare."""
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, timeout=60, check=False)
    lines = set()
    for line in (run.stdout + run.stderr).decode("latin-1").splitlines():
        if line.startswith("Error"):
            line = re.sub(r"= <[^>]*>", "= <>", line)  # values, not attribute or module names
            lines.add(re.sub(r"<[0-9.]+>", "<uid>", line).strip())
    return lines


@pytest.fixture()
def stripped_series(data_root: Path, tmp_path: Path) -> Callable[[str, tuple[str, ...]], tuple[Path, Path]]:
    """Factory: ``(folder, original)``, a copy of the named real series in ``tmp_path`` without ``keywords``,
    and an unstripped copy of its first file (dciodvfy's baseline)."""

    def make(name: str, keywords: tuple[str, ...]) -> tuple[Path, Path]:
        source = data_root / SOURCES[name]
        if not source.exists():
            pytest.fail(f"{source} is missing from MEDLENS_DATA (see ../shared/data/README.md)")
        folder = tmp_path / name
        folder.mkdir()
        if name == "siemens-mr":
            _siemens_crop(source, folder)
        elif source.is_dir():
            for path in sorted(source.iterdir()):
                shutil.copy(path, folder / path.name)
        else:
            shutil.copy(source, folder / source.name)
        files = sorted(folder.iterdir())
        original = tmp_path / "original.dcm"
        shutil.copy(files[0], original)
        for path in files:
            ds = pydicom.dcmread(path)
            for keyword in keywords:
                if keyword in ds:
                    delattr(ds, keyword)
            ds.save_as(path)
        return folder, original

    return make


def _write_all(folder: Path, out: Path) -> tuple[dict[str, Path], Dataset]:
    """A SEG, a Secondary Capture joining the source's study and one from the image's identifiers."""
    image = read_image(folder)
    files = list(find_series(folder)[0].files)
    labels = np.zeros(image.spatial_shape, np.uint8)  # (I, J, K)
    labels[2:6, 3:9, image.spatial_shape[2] // 2] = 1
    outputs = {
        "seg": write_dicom_seg(labels, image, files, out / "seg.dcm", ["background", "lesion"]),
        "sc-reference": write_image(image, out / "sc_reference.dcm", reference=files[0]),
        "sc-identifiers": write_image(image, out / "sc_identifiers.dcm"),
    }
    return outputs, pydicom.dcmread(files[0], stop_before_pixels=True)


def _check(kind: str, output: Path, source: Dataset, original: Path, stripped: tuple[str, ...], dciodvfy: str):
    """Valid, the stripped Type 2 attributes present and empty, the others copied unchanged."""
    new_errors = dciodvfy_errors(dciodvfy, output) - dciodvfy_errors(dciodvfy, original)
    assert new_errors == set(), f"{kind}: {sorted(new_errors)}"
    out = pydicom.dcmread(output)
    # Secondary Capture without a reference takes only the image's identifiers (kept apart for de-identification)
    carried = IDENTIFIER_TAGS if kind == "sc-identifiers" else PATIENT_STUDY_TYPE2
    for keyword in PATIENT_STUDY_TYPE2:
        assert keyword in out, f"{kind}: {keyword} missing"
        if keyword in stripped:
            assert out[keyword].is_empty, f"{kind}: {keyword} = {out[keyword].value!r}, expected empty"
        elif keyword in carried:
            assert str(out[keyword].value) == str(source[keyword].value), f"{kind}: {keyword} changed"
    assert out.Manufacturer == "medlens"
    if kind != "sc-identifiers":
        acquisition = [
            item
            for item in out.get("ContributingEquipmentSequence", [])
            if item.PurposeOfReferenceCodeSequence[0].CodeValue == ACQUISITION_EQUIPMENT
        ]
        if "Manufacturer" in stripped or not source.get("Manufacturer"):
            assert acquisition == []
        else:
            assert [item.Manufacturer for item in acquisition] == [source.Manufacturer]
    if kind == "seg":
        assert "PositionReferenceIndicator" in out
        if "PositionReferenceIndicator" in stripped:
            assert out["PositionReferenceIndicator"].is_empty
        else:
            assert out.PositionReferenceIndicator == source.PositionReferenceIndicator


@pytest.mark.integration
@pytest.mark.parametrize("keyword", STRIPPED)
def test_one_type2_attribute_missing(stripped_series, tmp_path: Path, dciodvfy: str, keyword: str) -> None:
    folder, original = stripped_series("siemens-mr", (keyword,))
    outputs, source = _write_all(folder, tmp_path)
    assert keyword not in source
    for kind, output in outputs.items():
        _check(kind, output, source, original, (keyword,), dciodvfy)


@pytest.mark.integration
@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("stripped", [(), STRIPPED], ids=["complete", "all-stripped"])
def test_vendors_and_modalities(
    stripped_series, tmp_path: Path, dciodvfy: str, name: str, stripped: tuple[str, ...]
) -> None:
    folder, original = stripped_series(name, stripped)
    outputs, source = _write_all(folder, tmp_path)
    if not stripped:  # the shared data has them all: copied unchanged
        assert all(keyword in source for keyword in STRIPPED)
    for kind, output in outputs.items():
        _check(kind, output, source, original, stripped, dciodvfy)


def test_type2_keywords_follow_the_standard() -> None:
    for sop_class in (SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage, EnhancedSRStorage):
        assert set(type2_keywords(sop_class)) == set(PATIENT_STUDY_TYPE2), sop_class
    # A user-optional module counts once the source carries it: Clinical Trial Subject (PS3.3 C.7.1.3)
    trial = Dataset()
    trial.ClinicalTrialSponsorName, trial.ClinicalTrialProtocolID = "sponsor", "protocol"
    expected = {*PATIENT_STUDY_TYPE2, "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName"}
    assert set(type2_keywords(SegmentationStorage, trial)) == expected


def test_sources_are_completed_on_copies(data_root: Path) -> None:
    original = pydicom.dcmread(data_root / SOURCES["ge-ct-small"], stop_before_pixels=True)
    stripped = pydicom.dcmread(data_root / SOURCES["ge-ct-small"], stop_before_pixels=True)
    del stripped.PatientBirthDate, stripped.StudyID
    completed = with_type2_attributes([stripped, original], SegmentationStorage)
    assert "PatientBirthDate" not in stripped and "StudyID" not in stripped  # the caller's dataset is unchanged
    assert completed[0].PatientBirthDate == "" and completed[0].StudyID == ""
    assert completed[0].PatientID == original.PatientID and completed[0].SOPInstanceUID == original.SOPInstanceUID
    assert completed[1] is original  # nothing missing: no copy
