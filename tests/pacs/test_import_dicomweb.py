"""``medlens import dicomweb`` from a real Orthanc: a segmentation dataset from DICOM SEG labels, de-identified on
the way; a classification dataset from a CSV keyed by AccessionNumber or StudyInstanceUID; one-line errors.

What it proves: every label map the importer writes equals the original Hippocampus label voxel for voxel, no
patient name, ID, accession number or UID of the archive is left anywhere in the de-identified dataset, the
splits keep to the fractions and seed asked for, and classes come from the table.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_server import PASSWORD, TOKEN, USER, Orthanc
from pacs_cases import hippocampus_entries, picture_study

from medlens.cli.main import main

pytestmark = pytest.mark.integration
Studies = Callable[[int], list[tuple[list[Path], Path, str]]]


def test_segmentation_dataset_from_seg_labels_deidentified(
    orthanc: Orthanc, hippo_studies: Studies, hippocampus_root: Path, tmp_path: Path
) -> None:
    from medlens.data.dataset import load_dataset
    from medlens.io import read_image

    orthanc.clear()
    studies = hippo_studies(4)
    for files, seg, _ in studies:
        orthanc.upload([*files, seg])
    key = tmp_path / "site.key"
    key.write_bytes(b"a site key of enough bytes, kept apart")
    out = tmp_path / "ds"
    args = ["import", "dicomweb", orthanc.dicomweb, "--out", str(out), "--token", TOKEN]
    args += ["--query", "ModalityInStudy=MR"]  # the spelling: read as ModalitiesInStudy
    split = ["--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "3"]
    assert main([*args, "--labels", "seg", "--deid", "--key", str(key), *split]) == 0

    dataset = load_dataset(out)
    assert dataset.spec.task == "segmentation" and dataset.spec.spatial_dims == 3
    assert dataset.spec.classes == ["background", "anterior", "posterior"] and dataset.spec.modality == "MR"
    assert sorted(c.split for c in dataset.cases) == ["test", "train", "train", "val"]
    originals = [
        read_image(hippocampus_root / hippocampus_entries(hippocampus_root)[100 + i]["label"]).array[0]
        for i in range(len(studies))
    ]
    for case in dataset.cases:
        mask = read_image(out / case.target).array[0]
        assert sum(np.array_equal(mask, o) for o in originals) == 1, case.case_id  # voxel for voxel
        assert read_image(out / case.image[0]).spatial_shape == mask.shape
    secrets = set()
    for files, seg, study in studies:
        source = pydicom.dcmread(files[0])
        secrets |= {str(source.PatientID), str(source.PatientName), str(source.AccessionNumber), study}
        secrets |= {str(source.SeriesInstanceUID), str(source.SOPInstanceUID), str(pydicom.dcmread(seg).SOPInstanceUID)}
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [s for s in secrets if s.encode() in data]
            assert not found, (path, found)
    header = pydicom.dcmread(next((out / "images").glob("*/*.dcm")), stop_before_pixels=True)
    assert header.PatientIdentityRemoved == "YES" and header.PatientID == dataset.cases[0].patient_id


def test_classification_dataset_from_a_table(
    orthanc: Orthanc, medmnist_subset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orthanc.clear()
    data = medmnist_subset("pneumoniamnist", 1, 1, 12)
    names = ["normal", "pneumonia"]
    rows = []
    for i, (pixels, label) in enumerate(zip(data["test_images"][:7], data["test_labels"][:7], strict=True)):
        path = picture_study(pixels, tmp_path / "src" / f"{i}.dcm", accession=f"ACC{i}", patient_id=f"P{i // 2}")
        orthanc.upload([path])
        if i < 6:  # the seventh study is not in the table
            rows.append({"AccessionNumber": f"ACC{i}", "diagnosis": names[int(np.ravel(label)[0])]})
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["AccessionNumber", "diagnosis"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "ds"
    args = ["import", "dicomweb", orthanc.dicomweb, "--labels", str(table), "--user", f"{USER}:{PASSWORD}"]
    assert main([*args, "-o", str(out)]) == 1
    assert "'label' column" in capsys.readouterr().err  # the default --label-column is not in the table
    assert main([*args, "--out", str(out), "--label-column", "diagnosis"]) == 0
    from medlens.data.dataset import load_dataset

    dataset = load_dataset(out)
    assert dataset.spec.task == "classification" and dataset.spec.spatial_dims == 2
    assert dataset.spec.classes == sorted({r["diagnosis"] for r in rows}) and len(dataset.cases) == 6
    by_accession = {r["AccessionNumber"]: r["diagnosis"] for r in rows}
    for case in dataset.cases:
        ds = pydicom.dcmread(out / case.image[0], stop_before_pixels=True)
        assert dataset.spec.classes[int(case.target)] == by_accession[str(ds.AccessionNumber)]
        assert case.patient_id == str(ds.PatientID)  # without --deid: as stored
    assert main([*args, "--out", str(out), "--label-column", "diagnosis"]) == 1  # exists
    assert main([*args, "--out", str(out), "--label-column", "diagnosis", "--overwrite"]) == 0


def test_errors_are_one_line(orthanc: Orthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["import", "dicomweb", orthanc.dicomweb, "--token", TOKEN]

    def error(args: list[str]) -> str:
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "--deid" in error([*base, "--out", str(tmp_path / "a"), "--key", str(tmp_path / "k")])
    table = tmp_path / "t.csv"
    table.write_text("PatientID,label\nP1,normal\n")
    assert "StudyInstanceUID or AccessionNumber" in error([*base, "--out", str(tmp_path / "b"), "--labels", str(table)])
    assert "ModalitiesInStudy" in error([*base, "--out", str(tmp_path / "c"), "--query", "ModalitesInStudy=MR"])
    orthanc.clear()
    assert "found no study" in error([*base, "--out", str(tmp_path / "d")])
    assert not any((tmp_path / n).exists() for n in "abcd")
