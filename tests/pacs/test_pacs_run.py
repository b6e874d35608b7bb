"""``medlens pacs run`` against a real Orthanc with its DICOMweb plugin: search, retrieve, predict, push.

What it proves: a SEG made from a real Hippocampus series lands in the same study (Orthanc's REST API lists it),
passes dciodvfy, holds exactly the label map ``bundle.predict`` gives on that series, and carries the study's
identifiers as stored; the study's own label SEG is passed over by the series rules; classification and
detection results come back as Secondary Capture pictures; authentication, retries and the 4xx errors.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from orthanc_server import PASSWORD, TOKEN, USER, Orthanc, free_port
from pacs_cases import picture_study

from medlens.cli.main import main

pytestmark = pytest.mark.integration
Studies = Callable[[int], list[tuple[list[Path], Path, str]]]


def results_in(orthanc: Orthanc, study: str, modality: str, ours: bool = False) -> list[dict[str, str]]:
    """The instances of ``study`` of ``modality`` (only those medlens made, named "run v<version> ...")."""
    found = [i for i in orthanc.instances_of_study(study) if i["modality"] == modality]
    return [i for i in found if i["description"].startswith("run v")] if ours else found


def test_run_pushes_a_seg_into_the_study(
    hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies, dciodvfy: str, tmp_path: Path
) -> None:
    from medlens.io import read_image
    from medlens.io.dicom_seg import read_dicom_seg
    from medlens.pacs.results import model_version
    from medlens.tasks.base import load_bundle

    orthanc.clear()
    (files, label_seg, study), (other_files, _, other) = hippo_studies(2)
    orthanc.upload([*files, label_seg, *other_files])
    run = hippo_run / "run"
    out = tmp_path / "out"
    args = ["pacs", "run", str(run), "--dicomweb", orthanc.dicomweb, "--study", study, "--token", TOKEN]
    assert main([*args, "--out", str(out)]) == 0  # without --push: nothing goes into the PACS
    assert len(results_in(orthanc, study, "SEG")) == 1  # only the study's own label SEG
    assert main([*args, "--push"]) == 0

    segs = results_in(orthanc, study, "SEG")
    bundle = load_bundle(run)
    ours = [s for s in segs if s["description"] == f"run v{model_version(bundle)} SEG"]
    assert len(segs) == 2 and len(ours) == 1  # the label SEG and ours, in the same study
    assert not results_in(orthanc, other, "SEG")  # the other study was not touched
    path = tmp_path / "pushed_seg.dcm"
    path.write_bytes(orthanc.file_of(ours[0]["id"]))
    checked = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors

    seg, source = pydicom.dcmread(path), pydicom.dcmread(files[0])
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "PatientBirthDate"):
        assert seg.get(keyword) == source.get(keyword), keyword  # the study's identifiers as received
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.Modality == "SEG"
    image = read_image(files)
    labels, names = read_dicom_seg(path, image, files)
    expected = bundle.predict(image).labels.array[0]  # type: ignore[attr-defined]
    assert names == bundle.class_names and np.array_equal(labels, expected)

    (sr_stored,) = results_in(orthanc, study, "SR", ours=True)  # the SR went into the same study beside the SEG
    assert sr_stored["description"] == f"run v{model_version(bundle)} SR"
    sr_path = tmp_path / "pushed_sr.dcm"
    sr_path.write_bytes(orthanc.file_of(sr_stored["id"]))
    checked = subprocess.run([dciodvfy, str(sr_path)], capture_output=True, text=True, check=False)
    errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors
    sr = hd.sr.srread(sr_path)
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == bundle.class_names[1:]  # a volume per structure
    for group in groups:  # each volume points at the SEG pushed with it
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID

    report = json.loads((out / "studies.json").read_text())
    assert report[0]["series"] == str(source.SeriesInstanceUID) and report[0]["pushed"] is False
    seg_series = str(pydicom.dcmread(label_seg).SeriesInstanceUID)
    assert report[0]["passed_over"] == {seg_series: "a SEG object, not images"}
    assert (out / report[0]["results"][0]["file"]).is_file()


def test_run_query_and_basic_auth_give_classification_pictures(
    pneumonia_run: Path, orthanc: Orthanc, medmnist_subset, tmp_path: Path
) -> None:
    from medlens.io import read_image
    from medlens.tasks.base import load_bundle

    orthanc.clear()
    pictures = medmnist_subset("pneumoniamnist", 1, 1, 3)["test_images"]
    files = [picture_study(p, tmp_path / f"x{i}.dcm", accession=f"A{i}", patient_id=f"P{i}") for i, p in
             enumerate(pictures)]  # fmt: skip
    ct = picture_study(pictures[0], tmp_path / "ct.dcm", accession="C1", patient_id="P9", modality="CT")
    orthanc.upload([*files, ct])
    out = tmp_path / "out"
    run = pneumonia_run / "run"
    code = main(["pacs", "run", str(run), "--dicomweb", orthanc.dicomweb, "--query", "ModalitiesInStudy=DX",
                 "--user", f"{USER}:{PASSWORD}", "--push", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "studies.json").read_text())
    assert len(report) == 3  # the CT study is not found by the query
    bundle = load_bundle(run)
    for item, path in zip(sorted(report, key=lambda r: r["series"]), sorted(files, key=_series), strict=True):
        source = pydicom.dcmread(path)
        assert item["prediction"]["label"] == bundle.predict(read_image(path)).label  # type: ignore[attr-defined]
        (stored,) = results_in(orthanc, str(source.StudyInstanceUID), "OT")
        picture = pydicom.dcmread(_fetch(orthanc, stored["id"], tmp_path))
        assert picture.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and picture.BurnedInAnnotation == "YES"
        assert picture.PatientID == source.PatientID and picture.AccessionNumber == source.AccessionNumber
        assert picture.Columns >= 384 and picture.Rows > picture.Columns  # enlarged, with the caption band below
        assert stored["description"].startswith("run v")


def test_run_detection_gives_a_picture_with_boxes(
    bccd_run: Path, orthanc: Orthanc, bccd_root: Path, tmp_path: Path
) -> None:
    from PIL import Image as PILImage

    orthanc.clear()
    name = (bccd_root / "ImageSets/Main/val.txt").read_text().split()[0]
    rgb = np.asarray(PILImage.open(bccd_root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
    path = picture_study(rgb, tmp_path / "cells.dcm", accession="B1", patient_id="PB", modality="OT")
    orthanc.upload([path])
    study = str(pydicom.dcmread(path).StudyInstanceUID)
    out = tmp_path / "out"
    args = ["pacs", "run", str(bccd_run / "run"), "--dicomweb", orthanc.dicomweb, "--study", study, "--token", TOKEN]
    assert main([*args, "--push", "--out", str(out)]) == 0
    (stored,) = results_in(orthanc, study, "OT", ours=True)
    picture = pydicom.dcmread(_fetch(orthanc, stored["id"], tmp_path)).pixel_array  # (H, W, 3)
    boxes = json.loads((out / "studies.json").read_text())[0]["prediction"]["boxes"]
    assert boxes and picture.shape[1] == rgb.shape[1]
    assert not np.array_equal(picture[: rgb.shape[0]], rgb)  # boxes drawn on the picture
    assert main([*args, "--out", str(out)]) == 1  # an existing --out is refused ...
    assert main([*args, "--out", str(out), "--overwrite"]) == 0  # ... and replaced with --overwrite
    assert len(results_in(orthanc, study, "OT", ours=True)) == 1  # neither run pushed


def test_errors_are_one_line(hippo_run: Path, orthanc: Orthanc, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(hippo_run / "run")
    base = ["pacs", "run", run, "--dicomweb", orthanc.dicomweb]

    def error(args: list[str]) -> str:
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "HTTP 403" in error([*base, "--study", "1.2.3", "--push"]) and orthanc.dicomweb in error(
        [*base, "--study", "1.2.3", "--push", "--user", "radiology:wrong"]
    )
    assert "no study 1.2.3" in error([*base, "--study", "1.2.3", "--push", "--token", TOKEN])
    assert "--push" in error([*base, "--study", "1.2.3", "--token", TOKEN])  # results would go nowhere
    assert "--study" in error([*base, "--push", "--token", TOKEN])
    assert "not an http" in error(["pacs", "run", run, "--dicomweb", "pacs:8042", "--study", "1", "--push"])
    assert "HTTP 400" in error([*base, "--query", "StudyDate=notadate&limit=x", "--push", "--token", TOKEN])
    started = time.monotonic()
    nowhere = f"http://127.0.0.1:{free_port()}/dicom-web"
    message = error(["pacs", "run", run, "--dicomweb", nowhere, "--study", "1.2.3", "--push"])
    assert "after 4 tries" in message and "connection refused" in message
    assert time.monotonic() - started >= 3.0  # backoff 0.5 + 1 + 2 s


def test_a_server_that_comes_back_is_retried(hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies) -> None:
    orthanc.clear()
    files, _, study = hippo_studies(1)[0]
    orthanc.upload(files)
    orthanc.stop()
    starter = threading.Timer(0.8, orthanc.start)
    starter.start()
    try:
        code = main(["pacs", "run", str(hippo_run / "run"), "--dicomweb", orthanc.dicomweb, "--study", study,
                     "--push", "--token", TOKEN])  # fmt: skip
    finally:
        starter.join()
    assert code == 0 and len(results_in(orthanc, study, "SEG")) == 1


def _series(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _fetch(orthanc: Orthanc, instance: str, folder: Path) -> Path:
    path = folder / f"{instance}.dcm"
    path.write_bytes(orthanc.file_of(instance))
    return path
