"""Every flag of every command does what its help says: a guard that each flag appears in the tests, and tests of
the effect of the flags no other test exercises.

The guard lists the flags from the command tree itself (the same objects ``--help`` prints; each is checked to be
in its command's ``--help`` text) and requires each flag to appear in a test file that also names its command.
Other files hold the effects of ``--out``/``--overwrite`` (``test_outputs.py``), ``--resume``
(``workflows/test_resume.py``), ``--budget`` (``workflows/test_budget.py``), ``--nonfinite`` and ``--strict``
(``workflows/test_nonfinite.py``), ``--folds`` and ``--dicom-seg`` (``tasks/segmentation``), ``--seeds``
(``workflows/test_classification_flow.py``), ``--debug`` (``workflows/test_bad_input.py``), ``--report``,
``--lang`` and ``--update-card`` (``reports/test_clinical.py``), ``--dicom-sr`` (``workflows/test_reports.py``).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from import_inputs import importer_for
from medlens.cli.main import main

TESTS = Path(__file__).resolve().parents[1]
# deid is de-identification's own work (tests/deid); these of its flags have no test of their effect yet
NOT_YET = {("deid", "--profile"), ("deid", "--keep-patient-characteristics"), ("deid", "--keep-device-identity"),
           ("deid", "--quarantine"), ("deid", "-j")}  # fmt: skip


def commands() -> Iterator[tuple[list[str], object]]:
    """Every command of the ``medlens`` tree with its path (``[]`` is the root, ``["import", "voc"]`` a leaf)."""
    import typer

    from medlens.cli.main import app

    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def flags_of(command: object) -> list[str]:
    options = [p for p in getattr(command, "params", []) if getattr(p, "param_type_name", "") == "option"]
    return [flag for p in options for flag in (*p.opts, *p.secondary_opts)]


ALL_FLAGS = [(path, flag) for path, command in commands() for flag in flags_of(command)]


def test_the_flag_list_is_what_help_shows(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # long flags are not cut short in Rich's help table
    assert len(ALL_FLAGS) > 60
    for path, command in commands():
        if not flags_of(command):
            continue
        assert main([*path, "--help"]) == 0
        shown = capsys.readouterr().out
        for flag in flags_of(command):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown), (path, flag)


@cache
def _test_texts() -> list[str]:
    """Every test file's text; of this file only the effect tests (below), not the guard's own lists."""
    texts = []
    for path in TESTS.rglob("*.py"):
        text = path.read_text()
        texts.append(text.split(EFFECTS, 1)[1] if path == Path(__file__).resolve() else text)
    return texts


EFFECTS = "# ==== effect tests " + "="  # where this file's effect tests start


@pytest.mark.parametrize(("path", "flag"), ALL_FLAGS, ids=[f"{' '.join(p) or 'medlens'} {f}" for p, f in ALL_FLAGS])
def test_every_flag_appears_in_a_test_of_its_command(path: list[str], flag: str) -> None:
    if (" ".join(path), flag) in NOT_YET:
        return
    pattern = re.compile(rf"[\"']{re.escape(flag)}[\"'=\s]")
    name = f'"{path[-1]}"' if path else ""
    assert any(pattern.search(t) and name in t for t in _test_texts()), f"no test uses {flag} of {' '.join(path)}"


# ==== effect tests ===================================================================================================
# ---- the root -----------------------------------------------------------------------------------------------------
def test_quiet_keeps_info_messages_out(
    hippocampus_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = str(next((hippocampus_root / "imagesTr").glob("*.nii.gz")))
    assert main(["convert", case, str(tmp_path / "a.nii.gz")]) == 0
    loud = capsys.readouterr()
    assert main(["--quiet", "convert", case, str(tmp_path / "b.nii.gz")]) == 0
    quiet = capsys.readouterr()
    assert "wrote" in loud.out + loud.err and "wrote" not in quiet.out + quiet.err
    assert main(["-q", "convert", case, str(tmp_path / "c.nii.gz")]) == 0
    assert "wrote" not in "".join(capsys.readouterr())


# ---- import -------------------------------------------------------------------------------------------------------
def _splits(dataset: Path) -> dict[str, str]:
    return {r["case_id"]: r["split"] for r in csv.DictReader(open(dataset / "manifest.csv"))}


@pytest.mark.parametrize("kind", ["folder", "csv", "voc", "coco", "yolo", "msd", "pairs"])
def test_split_fractions_and_seed(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """--val-fraction and --test-fraction cut data without splits by patient; --seed chooses who goes where."""
    importer = importer_for(kind, tmp_path, request)
    if kind == "voc":
        shutil.rmtree(importer.inputs[0] / "ImageSets")  # VOC lists fix the split; without them it is cut
    half = _splits_of(importer, tmp_path / "half", "--val-fraction", "0", "--test-fraction", "0.5", "--seed", "0")
    n = len(half)
    assert sorted(half.values()).count("test") == round(n * 0.5) and "val" not in half.values()
    other = _splits_of(importer, tmp_path / "other", "--val-fraction", "0.25", "--test-fraction", "0.25")
    assert sorted(other.values()).count("val") >= 1
    seeds = [
        _splits_of(importer, tmp_path / f"seed{s}", "--val-fraction", "0", "--test-fraction", "0.5", "--seed", str(s))
        for s in (1, 2, 3)
    ]
    assert any(s != half for s in seeds)  # another seed, other patients held out
    assert all(sorted(s.values()) == sorted(half.values()) for s in seeds)  # the same sizes


def _splits_of(importer, out: Path, *flags: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert main(importer.args(out, *flags)) == 0
    return _splits(out)


def test_csv_column_flags(tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    importer = importer_for("csv", tmp_path, request)
    table = importer.inputs[0]
    rows = list(csv.reader(open(table)))[1:]
    custom = table.with_name("custom.csv")
    with open(custom, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "diagnosis", "subject", "part"])
        for i, (image, label) in enumerate(rows):  # two pictures per subject; the first four are the test part
            writer.writerow([image, label, f"s{i // 2}", "test" if i < 4 else ""])
    out = tmp_path / "ds"
    assert main(["import", "csv", str(custom), "--out", str(out)]) == 1
    assert "image" in capsys.readouterr().err  # the default column is not there
    flags = ["--image-column", "path", "--label-column", "diagnosis", "--patient-column", "subject"]
    assert main(["-q", "import", "csv", str(custom), "--out", str(out), *flags, "--split-column", "part"]) == 0
    manifest = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["patient_id"] for r in manifest} == {f"s{i}" for i in range(len(rows) // 2)}
    assert [r["split"] for r in manifest[:4]] == ["test"] * 4
    by_patient: dict[str, set[str]] = {}
    for r in manifest:
        by_patient.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_patient.values())  # a subject's pictures stay in one split
    assert yaml.safe_load((out / "dataset.yaml").read_text())["classes"] == ["normal", "pneumonia"]


@pytest.mark.parametrize("kind", ["voc", "coco", "yolo"])
def test_detection_classes_flag_chooses_and_orders_the_classes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    importer = importer_for(kind, tmp_path, request)
    out = tmp_path / "ds"
    assert main(importer.args(out, "--classes", "WBC,RBC")) == 0
    assert yaml.safe_load((out / "dataset.yaml").read_text())["classes"] == ["WBC", "RBC"]
    labels = set()
    for row in csv.DictReader(open(out / "manifest.csv")):
        labels |= {b["label"] for b in json.loads((out / row["target"]).read_text())["boxes"]}
    assert labels == {0, 1}  # platelets left out, WBC first


def test_pairs_classes_flag_names_the_classes(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    importer = importer_for("pairs", tmp_path, request)
    out = tmp_path / "ds"
    assert main(importer.args(out, "--classes", "background,front,back")) == 0
    assert yaml.safe_load((out / "dataset.yaml").read_text())["classes"] == ["background", "front", "back"]


# ---- plan, models, info, convert ----------------------------------------------------------------------------------
def test_plan_set_writes_the_value(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(["-q", "plan", str(pneumonia_dataset.root), "--set", "optim.lr=0.0123", "--set", "augment.gamma=0.3"]) == 0
    )
    plan = yaml.safe_load((pneumonia_dataset.root / "plan.yaml").read_text())
    assert plan["optim"]["lr"] == 0.0123 and plan["augment"]["gamma"] == 0.3


def test_models_task_filters_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--task", "detection"]) == 0
    detectors = capsys.readouterr().out
    assert "retinanet" in detectors and "monai_resnet18" not in detectors
    assert main(["models", "--task", "segmentation"]) == 0
    segmenters = capsys.readouterr().out
    assert "dynunet" in segmenters and "retinanet" not in segmenters


def _dicomdir(real_data) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    """pydicom's DICOMDIR tree and the key of its 5-frame CT series."""
    from medlens.io import find_series

    dicomdir = real_data("dicom/pydicom_testdata/dicomdirtests/DICOMDIR")
    key = next(s.key for s in find_series(dicomdir) if s.modality == "CT" and s.frames == 5)
    return dicomdir, key


def test_info_series_shows_that_series(real_data, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    dicomdir, key = _dicomdir(real_data)
    assert main(["info", str(dicomdir)]) == 0
    assert "choose one with --series" in capsys.readouterr().out
    assert main(["info", str(dicomdir), "--series", key]) == 0
    shown = capsys.readouterr().out
    assert "16 x 16 x 5" in shown and "CT" in shown


def test_convert_series_picks_the_series(real_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    dicomdir, key = _dicomdir(real_data)
    assert main(["-q", "convert", str(dicomdir), str(tmp_path / "ct.nii.gz"), "--series", key]) == 0
    assert nib.load(str(tmp_path / "ct.nii.gz")).shape[:3] == (16, 16, 5)
    assert main(["convert", str(dicomdir), str(tmp_path / "any.nii.gz")]) == 1  # several series: must choose
    assert "series" in capsys.readouterr().err


def test_convert_slice_and_window_choose_the_picture(mr_series_dir: Path, real_data, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image as PILImage

    def png(name: str, *flags: str, source: Path = mr_series_dir) -> np.ndarray:
        assert main(["-q", "convert", str(source), str(tmp_path / name), *flags]) == 0
        return np.asarray(PILImage.open(tmp_path / name))

    middle, low, high = png("m.png"), png("a.png", "--slice", "10"), png("b.png", "--slice", "100")
    assert not np.array_equal(low, high) and not np.array_equal(middle, low)
    ct = real_data("dicom/pydicom_testdata/CT_small.dcm")
    narrow, wide = png("n.png", "--window", "40,80", source=ct), png("w.png", "--window", "400,2000", source=ct)
    assert narrow.std() > wide.std()  # a narrow window spreads a smaller range of values over the grey levels
    assert not np.array_equal(png("bone.png", "--window", "bone", source=ct), narrow)
    assert main(["convert", str(ct), str(tmp_path / "ct.nii.gz"), "--window", "40,80"]) == 1
    assert ".png and .dcm" in capsys.readouterr().err


# ---- evaluate, predict, export ------------------------------------------------------------------------------------
def test_evaluate_split_and_bootstrap(pneumonia_run: Path, tmp_path: Path) -> None:
    run = str(pneumonia_run / "run")
    assert main(["-q", "evaluate", run, "--split", "val", "--bootstrap", "0", "--out", str(tmp_path / "v")]) == 0
    assert main(["-q", "evaluate", run, "--split", "train", "--bootstrap", "50", "--out", str(tmp_path / "t")]) == 0
    val, train = (json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("v", "t"))
    assert (val["dataset"]["split"], val["n_cases"], train["n_cases"]) == ("val", 40, 80)
    ids = {r["case_id"][:4] for r in csv.DictReader(open(tmp_path / "v" / "predictions.csv"))}
    assert ids == {"val_"}
    assert val["auc"]["ci95"] == [None, None]  # no resamples, no interval
    lo, hi = train["auc"]["ci95"]
    assert lo is not None and lo <= train["auc"]["value"] <= hi


def test_evaluate_dataset_measures_another_dataset(
    pneumonia_run: Path, tmp_path: Path, medmnist_subset, write_npz
) -> None:  # type: ignore[no-untyped-def]
    npz = write_npz(tmp_path / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist", 10, 10, 30))
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(tmp_path / "other")]) == 0
    out = tmp_path / "eval"
    args = ["-q", "evaluate", str(pneumonia_run / "run"), "--dataset", str(tmp_path / "other"), "--out", str(out)]
    assert main([*args, "--bootstrap", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["path"] == str((tmp_path / "other").resolve()) and metrics["n_cases"] == 30


def test_predict_pictures_flag(bccd_run: Path, tmp_path: Path) -> None:
    picture = str(sorted((bccd_run / "voc" / "JPEGImages").iterdir())[0])
    assert main(["-q", "predict", str(bccd_run / "run"), picture, "--out", str(tmp_path / "with")]) == 0
    assert (
        main(["-q", "predict", str(bccd_run / "run"), picture, "--out", str(tmp_path / "explicit"), "--pictures"]) == 0
    )
    assert (
        main(["-q", "predict", str(bccd_run / "run"), picture, "--out", str(tmp_path / "without"), "--no-pictures"])
        == 0
    )
    stem = Path(picture).stem
    assert (tmp_path / "with" / f"{stem}.png").is_file() and (tmp_path / "explicit" / f"{stem}.png").is_file()
    assert not (tmp_path / "without" / f"{stem}.png").exists() and (tmp_path / "without" / f"{stem}.json").is_file()
    assert json.loads((tmp_path / "with" / f"{stem}.json").read_text())["files"]["overlay"] == f"{stem}.png"


def test_predict_tta_averages_mirrored_predictions(hippo_run: Path, tmp_path: Path) -> None:
    """--tta averages mirrored copies (the plan has mirror axes): another label map than without, same grid."""
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[2]
    stem = case.name.removesuffix(".nii.gz")
    assert yaml.safe_load((hippo_run / "run" / "plan.yaml").read_text())["segmentation"]["mirror_axes"]
    assert main(["-q", "predict", str(hippo_run / "run"), str(case), "--out", str(tmp_path / "tta"), "--tta"]) == 0
    assert main(["-q", "predict", str(hippo_run / "run"), str(case), "--out", str(tmp_path / "plain")]) == 0
    tta, plain = (np.asarray(nib.load(str(tmp_path / f / f"{stem}_mask.nii.gz")).dataobj) for f in ("tta", "plain"))
    assert tta.shape == plain.shape and not np.array_equal(tta, plain)


def test_export_opset(pneumonia_run: Path, tmp_path: Path) -> None:
    import onnx

    assert main(["-q", "export", str(pneumonia_run / "run"), "--out", str(tmp_path / "onnx"), "--opset", "14"]) == 0
    model = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {14}
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["opset"] == 14
