"""Segmentation findings: each structure's volume (3D) or area (2D) from the label map and its spacing, on a real
hippocampus label map."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlens.core.image import Image
from medlens.io import read_image
from medlens.tasks import get_task
from medlens.tasks.segmentation.prediction import SegmentationPrediction

NAMES = ["background", "Anterior", "Posterior"]


def _prediction(labels: Image) -> SegmentationPrediction:
    return SegmentationPrediction(model="m", source="case", labels=labels, class_names=NAMES, sizes={}, image=labels)


@pytest.fixture()
def label_path(hippocampus_root: Path) -> Path:
    entry = json.loads((hippocampus_root / "dataset.json").read_text())["training"][0]
    return hippocampus_root / entry["label"]


def test_volumes_are_voxel_counts_times_voxel_volume(label_path: Path) -> None:
    labels = read_image(label_path, kind="label")
    labels.affine[:3, :3] = labels.affine[:3, :3] @ np.diag([0.86, 0.86, 0.9])  # a non-isotropic grid
    findings = get_task("segmentation").findings(_prediction(labels), None)  # type: ignore[arg-type]
    truth = np.asarray(nib.load(str(label_path)).dataobj)
    zooms = np.array(nib.load(str(label_path)).header.get_zooms()[:3]) * [0.86, 0.86, 0.9]
    assert [(f["structure"], f["segment"]) for f in findings] == [("Anterior", 1), ("Posterior", 2)]
    for k, finding in enumerate(findings, start=1):
        n = int((truth == k).sum())
        assert finding["kind"] == "volume" and finding["unit"] == "mL" and finding["voxels"] == n > 0
        assert finding["value"] == pytest.approx(n * float(np.prod(zooms)) / 1000, abs=5e-5)
        assert finding["voxel_volume_ml"] == pytest.approx(float(np.prod(zooms)) / 1000, rel=1e-5)


def test_2d_label_maps_give_areas(label_path: Path) -> None:
    volume = read_image(label_path, kind="label")
    k = int(np.argmax((volume.array[0] > 0).sum(axis=(0, 1))))  # the slice with most foreground
    labels = Image(volume.array[:, :, :, k], np.diag([0.5, 0.25, 1.0]), "label")  # (1, H, W), 0.5 x 0.25 mm pixels
    findings = get_task("segmentation").findings(_prediction(labels), None)  # type: ignore[arg-type]
    for finding in findings:
        n = int((labels.array[0] == finding["segment"]).sum())
        assert finding["kind"] == "area" and finding["unit"] == "mm2" and finding["pixels"] == n
        assert finding["value"] == pytest.approx(n * 0.125, abs=5e-5)


def test_findings_agree_with_the_predictions_own_volumes(hippo_run: Path) -> None:
    from medlens import load_bundle

    bundle = load_bundle(hippo_run / "run")
    prediction = bundle.predict(sorted((hippo_run / "msd" / "imagesTr").iterdir())[0])
    findings = bundle.task.findings(prediction, bundle)
    assert {f["structure"]: f["value"] for f in findings} == prediction.volumes_ml  # type: ignore[attr-defined]
