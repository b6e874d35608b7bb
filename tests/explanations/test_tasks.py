"""Segmentation (why these voxels are this class) and detection (why this box) explained through ``medlens explain``
on the shared trained runs: the map in the input's own geometry, a real overlay, and what was explained."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage

from medlens.cli.main import main


def _overlay(path: Path) -> np.ndarray:
    with PILImage.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        pixels = np.asarray(png)
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # a picture, not a flat fill
    return pixels


def test_segmentation_explain_writes_a_nifti_map_in_the_inputs_geometry(hippo_run: Path, tmp_path: Path) -> None:
    """The map of the largest predicted region's class, as NIfTI with the input's shape and affine; its peak lies
    near the region the model predicted (the map speaks of those voxels)."""
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    out = tmp_path / "explained"
    assert main(["-q", "explain", str(hippo_run / "run"), str(case), "--out", str(out), "--method", "gradcam"]) == 0
    stem = case.name.split(".")[0]
    source, heat = nib.load(str(case)), nib.load(str(out / f"{stem}_gradcam.nii.gz"))
    assert heat.shape[:3] == source.shape[:3]
    assert np.allclose(heat.affine, source.affine, atol=1e-5)
    values = np.asarray(heat.dataobj).reshape(source.shape[:3])
    assert np.isfinite(values).all() and values.max() > 0 and np.ptp(values) > 0
    info = json.loads((out / f"{stem}_gradcam.json").read_text())
    assert info["method"] == "gradcam" and info["target"] in ("Anterior", "Posterior")
    assert 0.0 < info["score"] <= 1.0 and info["shape"] == list(source.shape[:3])
    assert info["peak_index"] == [int(i) for i in np.unravel_index(int(values.argmax()), values.shape)]
    pixels = _overlay(out / f"{stem}_gradcam.png")
    assert pixels.shape[1] > pixels.shape[0]  # three planes through the peak side by side
    rows = (out / "explanations.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("source,method,target,score")


def test_detection_explain_shows_why_the_best_box(bccd_run: Path, tmp_path: Path) -> None:
    """The bundle's default method on a training picture (the detector finds cells there): a map of the picture's own
    size and geometry, and the box it explains named in the JSON."""
    from medlens.io import read_image

    picture = sorted((bccd_run / "voc" / "JPEGImages").iterdir())[0]
    out = tmp_path / "explained"
    assert main(["-q", "explain", str(bccd_run / "run"), str(picture), "--out", str(out)]) == 0
    from medlens import load_bundle

    bundle = load_bundle(bccd_run / "run")
    assert bundle.task.explain_methods == ("eigencam", "occlusion")  # gradient-free: boxes come through selection
    assert bundle.explanation["default"] == "eigencam"  # occlusion is slow, so not scored at training
    info_path = out / f"{picture.stem}_{bundle.explanation['default']}.json"
    info = json.loads(info_path.read_text())
    assert info["method"] == bundle.explanation["default"]  # the bundle's default, chosen at training
    assert any(name in info["target"] for name in ("RBC", "WBC", "Platelets"))
    heat = read_image(out / info_path.name.replace(".json", ".npz"))
    source = read_image(picture)
    assert heat.spatial_shape == source.spatial_shape and np.array_equal(heat.affine, source.affine)
    assert np.isfinite(heat.array).all() and np.ptp(heat.array) > 0
    _overlay(out / info_path.name.replace(".json", ".png"))
