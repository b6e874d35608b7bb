"""Slice attention through the ordinary 3D classification commands on real AdrenalMNIST3D volumes: selected by the
plan (``--set model.name=slice_attention``), trained one epoch, predicted (the prediction carries one weight per
slice and its picture, listed in the clinical report), evaluated (the report draws the attention) and exported to
ONNX (the graph agrees with torch)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from medlens.cli.main import main

SLICES = [
    "--set", "model.name=slice_attention",
    "--set", "model.kwargs.slice_axis=0",
    "--set", "model.kwargs.widen_factor=0.25",
    "--set", "train.max_epochs=1",
    "--set", "train.budget_minutes=null",
    "--set", "train.batch_size=8",
    "--set", "train.explain_images=0",
]  # fmt: skip


def test_slice_attention_trains_predicts_evaluates_and_exports(
    tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]], write_npz: Callable[..., Path]
) -> None:
    npz = write_npz(tmp_path / "adrenalmnist3d.npz", medmnist_subset("adrenalmnist3d", 12, 6, 6))
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(ds)]) == 0
    assert main(["-q", "train", str(ds), "--out", str(run), *SLICES]) == 0
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["model"]["name"] == "slice_attention"
    slices = plan["data"]["input_size"][0]

    volume = sorted((ds / "images").glob("test_*.nii.gz"))[0]
    pred = tmp_path / "pred"
    assert main(["-q", "predict", str(run), str(volume), "--out", str(pred), "--report", "--lang", "en"]) == 0
    saved = json.loads(next(pred.glob("*.json")).read_text())
    weights = saved["slice_attention"]
    assert saved["slice_axis"] == 0 and len(weights) == slices
    assert abs(sum(weights) - 1) < 1e-4
    picture = saved["files"]["explanation_slice_attention"]
    assert (pred / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(next((pred / "reports").glob("*.json")).read_text())
    assert picture in report["explanation"]["images"]  # the clinical report shows which slices decided
    assert picture in next((pred / "reports").glob("*.en.txt")).read_text()

    evaluation = tmp_path / "eval"
    assert main(["-q", "evaluate", str(run), "--out", str(evaluation), "--bootstrap", "20"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["slice_attention"]["axis"] == 0
    assert len(metrics["slice_attention"]["mean_per_slice"]) == slices
    html = (evaluation / "report.html").read_text()
    assert "Attention over slices" in html and 'id="slice-attention"' in html
    assert (evaluation / "slice_attention_mean.png").exists()

    assert main(["-q", "export", str(run), "--out", str(tmp_path / "onnx")]) == 0
    spec = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert spec["verification"]["checks"][0]["max_abs_diff_probabilities"] < 1e-3
