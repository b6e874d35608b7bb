"""Segmentation uncertainty: a voxel entropy map in the input's geometry beside the mask, a case score, mirrored
test-time passes as a source of disagreement; evaluation's BCa intervals and uncertainty figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medlens.cli.main import main
from medlens.metrics.bootstrap import bca_entry


def test_predict_writes_the_uncertainty_map_beside_the_mask(hippo_run: Path, tmp_path: Path) -> None:
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    stem = case.name.removesuffix(".nii.gz")
    assert main(["-q", "predict", str(hippo_run / "run"), str(case), "--out", str(tmp_path / "tta"), "--tta"]) == 0
    assert main(["-q", "predict", str(hippo_run / "run"), str(case), "--out", str(tmp_path / "plain")]) == 0
    written = json.loads((tmp_path / "tta" / f"{stem}.json").read_text())
    assert written["files"]["uncertainty_map"] == f"{stem}_uncertainty.nii.gz"
    source, mask = nib.load(str(case)), nib.load(str(tmp_path / "tta" / f"{stem}_mask.nii.gz"))
    entropy = nib.load(str(tmp_path / "tta" / f"{stem}_uncertainty.nii.gz"))
    assert entropy.shape == mask.shape == source.shape[:3]
    assert np.allclose(entropy.affine, source.affine, atol=1e-4)  # the input's own geometry
    values = np.asarray(entropy.dataobj)
    assert values.min() >= 0 and values.max() <= np.log(3) + 1e-4 and values.max() > 0.1  # 3 classes: at most ln 3
    labels = np.asarray(mask.dataobj)
    assert values[labels > 0].mean() > values[labels == 0].mean()  # doubt lies at the structures, not the background
    u, plain = written["uncertainty"], json.loads((tmp_path / "plain" / f"{stem}.json").read_text())["uncertainty"]
    mirror_axes = yaml.safe_load((hippo_run / "run" / "plan.yaml").read_text())["segmentation"]["mirror_axes"]
    assert u["passes"] == 2 ** len(mirror_axes) and plain["passes"] == 1
    assert u["member_disagreement"] > 0 and plain["member_disagreement"] == 0
    assert 0 < u["score"] <= np.log(3)


def test_evaluate_gives_bca_intervals_and_uncertainty_figures(hippo_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert (
        main(["-q", "evaluate", str(hippo_run / "run"), "--out", str(out), "--split", "all", "--bootstrap", "100"]) == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(open(out / "per_case.csv")))
    first, second = m["dice_per_class"]  # Anterior, Posterior
    dice = np.array([[float(r[f"dice_{first}"]), float(r[f"dice_{second}"])] for r in rows])
    expected = bca_entry(dice[:, 0], n_bootstrap=100)  # BCa of the per-case values (as written, 6 digits)
    assert m["dice_per_class"][first]["ci95"] == pytest.approx(expected["ci95"], abs=1e-5)
    assert "BCa" in m["bootstrap"]["method"] and m["bootstrap"]["unit"] == "case"
    u = m["uncertainty"]
    assert u["aurc"]["value"] is not None
    assert u["aurc"]["random_ranking"] == pytest.approx(np.mean(1 - dice.mean(axis=1)), abs=1e-4)
    assert all(float(r["uncertainty"]) > 0 for r in rows)
    assert "Uncertainty" in (out / "report.html").read_text()
