"""Non-finite pixels are never diagnosed silently, and every JSON medlens writes is standard JSON.

- ``predict`` on a NIfTI with NaN pixels skips it with the reason (exit code 1 when it was the only input, and
  nothing is written); with other inputs the run goes on and ``skipped.csv`` names it; ``--strict`` turns a skip
  into exit code 1; ``--nonfinite clean`` predicts it and flags the prediction.
- Every ``.json`` file under the runs, their datasets and the folders evaluate, predict and export write parses
  with a strict parser (``NaN`` and ``Infinity`` refused), including metrics that are undefined (``null``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlens.cli.main import main

pytestmark = pytest.mark.integration


def strict_load(path: Path) -> object:
    """``json.loads`` that refuses NaN, Infinity and -Infinity (RFC 8259 JSON only)."""

    def refuse(name: str) -> None:
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def check_every_json(*folders: Path) -> int:
    """Parse every JSON file (and the ``.medlens`` marker) under ``folders`` strictly; return how many."""
    count = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and (path.suffix == ".json" or path.name == ".medlens"):
                strict_load(path)
                count += 1
    return count


@pytest.fixture()
def scans(hippo_run: Path, tmp_path: Path) -> dict[str, Path]:
    """A real hippocampus case as given, and copies of it with NaN and with infinite pixels (float32 NIfTI)."""
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    image = nib.load(str(case))
    data = np.asarray(image.dataobj, dtype=np.float32)
    folder = tmp_path / "scans"
    folder.mkdir()
    good = folder / "good.nii.gz"
    shutil.copy(case, good)
    out = {"good": good}
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = data.copy()
        bad[10:14, 10:14, 10:14] = value
        out[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(bad, image.affine), str(out[name]))
    return out


def test_a_nan_input_alone_is_refused_with_its_name_and_nothing_is_written(
    hippo_run: Path, scans: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["predict", str(hippo_run / "run"), str(scans["nan"]), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nan.nii.gz" in err and "NaN or infinite" in err and "--nonfinite clean" in err
    assert not out.exists()


def test_a_nan_input_among_others_is_skipped_with_the_reason(
    hippo_run: Path, scans: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    inputs = [str(scans["good"]), str(scans["nan"]), str(scans["inf"])]
    assert main(["predict", str(hippo_run / "run"), *inputs, "--out", str(out), "--no-pictures"]) == 0
    skipped = {Path(r["input"]).name: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert set(skipped) == {"nan.nii.gz", "inf.nii.gz"}
    assert all("64 pixel(s) are NaN or infinite" in reason for reason in skipped.values())
    assert [r["input"] for r in csv.DictReader(open(out / "predictions.csv"))] == [str(scans["good"])]
    assert "skipped" in capsys.readouterr().err
    strict = tmp_path / "strict"
    assert main(["predict", str(hippo_run / "run"), *inputs, "--out", str(strict), "--strict"]) == 1
    assert (strict / "predictions.csv").is_file()  # --strict changes the exit code, not what is written


def test_clean_predicts_and_flags_the_input(hippo_run: Path, scans: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [str(scans["nan"]), str(scans["inf"]), str(scans["good"])]
    assert main(["-q", "predict", str(hippo_run / "run"), *inputs, "--out", str(out), "--nonfinite", "clean"]) == 0
    assert not (out / "skipped.csv").exists()
    for name in ("nan", "inf"):
        prediction = strict_load(out / f"{name}.json")
        assert isinstance(prediction, dict)
        assert len(prediction["flags"]) == 1 and "64 non-finite pixel(s) replaced" in prediction["flags"][0]
        mask = nib.load(str(out / f"{name}_mask.nii.gz"))
        assert mask.shape == nib.load(str(scans[name])).shape
    good = strict_load(out / "good.json")
    assert isinstance(good, dict) and good["flags"] == []


def test_an_unknown_nonfinite_policy_names_the_option(
    hippo_run: Path, scans: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", str(hippo_run / "run"), str(scans["nan"]), "--out", str(tmp_path / "o"), "--nonfinite", "zero"]
    assert main(args) == 1
    assert "--nonfinite" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_classification_json_is_strict_even_when_a_metric_is_undefined(pneumonia_run: Path, tmp_path: Path) -> None:
    """A test split with one class only: AUC is undefined, written as null, and the file is standard JSON."""
    ds = tmp_path / "one_class"
    shutil.copytree(pneumonia_run / "ds", ds)
    manifest = ds / "manifest.csv"
    rows = list(csv.DictReader(open(manifest)))
    kept = [r for r in rows if not (r["split"] == "test" and r["target"] == "1")]
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    out = tmp_path / "eval"
    args = ["-q", "evaluate", str(pneumonia_run / "run"), "--dataset", str(ds), "--out", str(out), "--bootstrap", "20"]
    assert main(args) == 0
    metrics = strict_load(out / "metrics.json")
    assert isinstance(metrics, dict) and metrics["auc"]["value"] is None
    predictions = tmp_path / "pred"
    images = sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[:3]
    assert main(["-q", "predict", str(pneumonia_run / "run"), *map(str, images), "--out", str(predictions)]) == 0
    assert main(["-q", "export", str(pneumonia_run / "run"), "--out", str(tmp_path / "onnx")]) == 0
    assert check_every_json(pneumonia_run / "run", pneumonia_run / "ds", out, predictions, tmp_path / "onnx") >= 10


def test_segmentation_json_is_strict(hippo_run: Path, scans: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert (
        main(["-q", "evaluate", str(hippo_run / "run"), "--split", "val", "--out", str(out), "--bootstrap", "10"]) == 0
    )
    predictions = tmp_path / "pred"
    args = ["-q", "predict", str(hippo_run / "run"), str(scans["good"]), str(scans["nan"]), "--out", str(predictions)]
    assert main(args) == 0
    assert check_every_json(hippo_run / "run", hippo_run / "ds", out, predictions) >= 6


def test_detection_json_is_strict(bccd_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert (
        main(["-q", "evaluate", str(bccd_run / "run"), "--split", "val", "--out", str(out), "--bootstrap", "10"]) == 0
    )
    predictions = tmp_path / "pred"
    picture = sorted((bccd_run / "voc" / "JPEGImages").iterdir())[0]
    assert main(["-q", "predict", str(bccd_run / "run"), str(picture), "--out", str(predictions)]) == 0
    assert check_every_json(bccd_run / "run", bccd_run / "ds", out, predictions) >= 8
