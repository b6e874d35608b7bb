"""The classification path end to end on real images: import, plan, train, evaluate, predict."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from medlens.cli.main import main


def test_train_writes_run_and_bundle(pneumonia_run: Path) -> None:
    run = pneumonia_run / "run"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["members"] == ["seed_0", "seed_1"] and summary["kind"] == "seeds"
    assert [s["seed"] for s in summary["member_summaries"]] == [0, 1]
    assert len(summary["val_auc_per_member"]) == 2 and summary["monitor"] == "val_auc"
    for seed in (0, 1):
        assert (run / f"seed_{seed}" / "checkpoints" / "best.ckpt").is_file()
        assert (run / f"seed_{seed}" / "checkpoints" / "last.ckpt").is_file()
        assert (run / f"seed_{seed}" / "curves.png").stat().st_size > 1000
        rows = list(csv.DictReader(open(run / f"seed_{seed}" / "logs" / "metrics.csv")))
        assert {r["epoch"] for r in rows if r.get("val_auc")} == {"0", "1"}
    bundle = yaml.safe_load((run / "bundle" / "bundle.yaml").read_text())
    assert bundle["members"] == ["member_0.safetensors", "member_1.safetensors"]
    assert 0.0 < bundle["threshold"] < 1.0  # chosen on validation
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["train"]["max_epochs"] == 2 and plan["model"]["kwargs"]["widen_factor"] == 0.25


def test_evaluate_metrics_agree_with_sklearn(pneumonia_run: Path) -> None:
    out = pneumonia_run / "eval"
    assert (
        main(
            [
                "-q",
                "evaluate",
                str(pneumonia_run / "run"),
                "--split",
                "test",
                "--out",
                str(out),
                "--bootstrap",
                "200",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == metrics["n_cases"] == 40
    y = np.array([int(r["target"]) for r in rows])
    p = np.array([float(r["p_pneumonia"]) for r in rows])
    assert metrics["auc"]["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    lo, hi = metrics["auc"]["ci95"]
    assert lo <= metrics["auc"]["value"] <= hi
    assert metrics["operating_point"]["chosen_on"] == "validation"
    assert "accuracy" in metrics["at_threshold_0.5"]
    assert metrics["seeds"]["n"] == 2 and "sd" in metrics["seeds"]["auc"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4


def test_predict_png_dicom_and_folder(pneumonia_run: Path, data_root: Path) -> None:
    images = sorted((pneumonia_run / "ds" / "images").glob("test_0000*.png"))[:3]
    folder = pneumonia_run / "predict_in"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    dicom = data_root / "dicom" / "pydicom_testdata" / "CT_small.dcm"
    out = pneumonia_run / "pred"
    assert main(["-q", "predict", str(pneumonia_run / "run"), str(folder), str(dicom), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 4
    for row in rows:
        p = float(row["p_normal"]) + float(row["p_pneumonia"])
        assert p == pytest.approx(1.0, abs=1e-4)
        assert row["prediction"] in {"normal", "pneumonia"}
    assert len(list(out.glob("*.json"))) == 4
    one = json.loads((out / f"{images[0].stem}.json").read_text())
    assert set(one["probabilities"]) == {"normal", "pneumonia"}


def test_predict_matches_evaluate_probabilities(pneumonia_run: Path) -> None:
    ev = pneumonia_run / "eval_val"
    assert (
        main(
            [
                "-q",
                "evaluate",
                str(pneumonia_run / "run"),
                "--split",
                "val",
                "--out",
                str(ev),
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    first = next(csv.DictReader(open(ev / "predictions.csv")))
    image = pneumonia_run / "ds" / "images" / f"{first['case_id']}.png"
    out = pneumonia_run / "pred_one"
    assert main(["-q", "predict", str(pneumonia_run / "run" / "bundle"), str(image), "--out", str(out)]) == 0
    row = next(csv.DictReader(open(out / "predictions.csv")))
    assert float(row["p_pneumonia"]) == pytest.approx(float(first["p_pneumonia"]), abs=1e-4)


def test_three_d_flow_with_nifti_prediction(
    tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]], write_npz: Callable[..., Path]
) -> None:
    npz = write_npz(tmp_path / "adrenalmnist3d.npz", medmnist_subset("adrenalmnist3d", 40, 20, 20))
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(ds)]) == 0
    assert yaml.safe_load((ds / "dataset.yaml").read_text())["spatial_dims"] == 3
    assert (
        main(
            [
                "-q",
                "train",
                str(ds),
                "--out",
                str(run),
                "--set",
                "train.max_epochs=1",
                "--set",
                "train.budget_minutes=null",
                "--set",
                "train.batch_size=8",
                "--set",
                "model.kwargs.widen_factor=0.25",
            ]
        )
        == 0
    )
    assert yaml.safe_load((run / "plan.yaml").read_text())["spatial_dims"] == 3
    volume = sorted((ds / "images").glob("test_*.nii.gz"))[0]
    assert main(["-q", "predict", str(run), str(volume), "--out", str(tmp_path / "pred")]) == 0
    row = next(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert row["prediction"] in {"normal", "hyperplasia"}
    assert main(["-q", "export", str(run), "--out", str(tmp_path / "onnx")]) == 0  # a 3D network exports too
    spec = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert spec["inputs"][0]["shape"][2:] == yaml.safe_load((run / "plan.yaml").read_text())["data"]["input_size"]
    assert spec["verification"]["checks"][0]["max_abs_diff_probabilities"] < 1e-3


def test_pretrained_checkpoint_with_other_head(tiny: list[str], pneumonia_run: Path, tmp_path: Path) -> None:
    """--set model.pretrained=PATH starts from a checkpoint; a head of another size is replaced."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(pneumonia_run / "run" / "bundle" / "member_0.safetensors"))
    state = {k: (torch.zeros(5, v.shape[1]) if k.startswith("fc.") and v.ndim == 2 else v) for k, v in state.items()}
    state = {k: (torch.zeros(5) if k == "fc.bias" else v) for k, v in state.items()}
    ckpt = tmp_path / "other_head.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, ckpt)
    run = tmp_path / "run"
    code = main(
        [
            "-q",
            "train",
            str(pneumonia_run / "ds"),
            "--out",
            str(run),
            *tiny,
            "--set",
            "train.max_epochs=1",
            "--set",
            f"model.pretrained={ckpt}",
        ]
    )
    assert code == 0
    assert (run / "bundle" / "member_0.safetensors").is_file()


def test_export_matches_the_bundle_and_refuses_to_overwrite(
    pneumonia_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 2-seed ensemble in one ONNX graph gives the bundle's probabilities on real test images."""
    import onnxruntime as ort

    from medlens import load_bundle
    from medlens.data.dataset import load_dataset
    from medlens.io import read_image
    from medlens.training.images import to_input

    out = tmp_path / "onnx"
    assert main(["export", str(pneumonia_run / "run"), "--out", str(out)]) == 0
    bundle = load_bundle(pneumonia_run / "run")
    spec = json.loads((out / "export.json").read_text())
    assert spec["task"] == bundle.plan.task and spec["members"] == 2 and spec["class_names"] == bundle.class_names
    assert spec["verification"]["checks"][0]["max_abs_diff_probabilities"] < 1e-3
    data = load_dataset(pneumonia_run / "ds")
    paths = [data.image_paths(c)[0] for c in data.split("test")[:16]]
    # the test feeds ONNX Runtime itself, as export.json says: images resized to input_size, raw units
    x = np.stack([to_input(read_image(p), bundle.plan.data) for p in paths]).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {spec["inputs"][0]["name"]: x})
    want = np.array([[bundle.predict(p).probabilities[n] for n in bundle.class_names] for p in paths])
    assert got.shape == (16, 2) and np.abs(got - want).max() < 1e-4
    capsys.readouterr()
    assert main(["export", str(pneumonia_run / "run"), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "nothing")]) == 1
    assert "no trained model" in capsys.readouterr().err and not (tmp_path / "nothing").exists()
