"""The real commands end to end on a few real hippocampus cases, at tiny sizes (seconds, not minutes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medlens.cli.main import main

TINY = [
    "--set", "segmentation.iterations_per_epoch=2",
    "--set", "train.max_epochs=1",
    "--set", "train.batch_size=2",
    "--set", "data.input_size=[16,16,16]",
    "--set", "train.explain_images=0",  # explanation scoring has its own tests
]  # fmt: skip


def test_train_writes_the_bundle_with_its_choices(hippo_run: Path) -> None:
    run = hippo_run / "run"
    bundle = yaml.safe_load((run / "bundle" / "bundle.yaml").read_text())
    assert bundle["task"] == "segmentation" and bundle["plan"]["segmentation"]["configuration"] == "3d"
    assert bundle["plan"]["data"]["input_size"] == [32, 32, 32] and bundle["members"] == ["member_0.safetensors"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["monitor"] == "val_dice" and summary["member_summaries"][0]["epochs"] == 3
    assert bundle["info"]["keep_largest_component"] == summary["keep_largest_component"]  # chosen on validation
    card = (run / "bundle" / "model_card.md").read_text()
    assert "keep largest component" in card and "Worst validation cases by mean foreground Dice" in card
    assert bundle["info"]["card"]["worst_val_cases"][0]["case_id"] in card


def test_evaluate_writes_every_metric_and_the_report(hippo_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", str(hippo_run / "run"), "--out", str(out), "--split", "all", "--bootstrap", "50"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cases"] == 6 and 0 < metrics["dice"]["value"] <= 1
    assert set(metrics["dice_per_class"]) == {"Anterior", "Posterior"}
    for key in ("iou", "hd95", "asd", "nsd"):
        assert set(metrics[key]) == {"Anterior", "Posterior"}
    assert metrics["nsd_tolerance_mm"] == {"Anterior": 1.0, "Posterior": 1.0}  # one voxel at the target spacing
    worst = metrics["worst_cases"]  # the known failure modes: lowest mean Dice first
    assert [w["metric"] for w in worst] == ["mean foreground Dice"] * 5
    assert [w["value"] for w in worst] == sorted(w["value"] for w in worst)
    assert "Worst cases" in (out / "report.html").read_text()


def test_predict_finds_the_structure_in_the_inputs_own_geometry(hippo_run: Path, tmp_path: Path) -> None:
    """A prediction on a training case is a non-empty label map on the input's grid that overlaps the truth."""
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[0]
    out = tmp_path / "pred"
    assert main(["predict", str(hippo_run / "run"), str(case), "--out", str(out)]) == 0
    mask = nib.load(str(out / f"{case.name.removesuffix('.nii.gz')}_mask.nii.gz"))
    source = nib.load(str(case))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    labels = np.asarray(mask.dataobj)
    truth = np.asarray(nib.load(str(hippo_run / "msd" / "labelsTr" / case.name)).dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    assert (labels > 0).sum() > 100, "the model found no foreground"
    overlap = 2 * ((labels > 0) & (truth > 0)).sum() / ((labels > 0).sum() + (truth > 0).sum())
    assert overlap > 0.1, f"foreground Dice {overlap:.3f}"
    row = json.loads((out / f"{case.name.removesuffix('.nii.gz')}.json").read_text())
    voxel_ml = float(np.prod(source.header.get_zooms()[:3])) / 1000
    assert row["volumes_ml"]["Anterior"] == pytest.approx((labels == 1).sum() * voxel_ml, abs=1e-3)
    assert (out / "predictions.csv").is_file()


def test_kfold_members_and_their_onnx_export(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    """--folds 2 makes a 2-member bundle; in ONNX Runtime its export gives the folds' mean softmax on a real,
    preprocessed case, at the patch size and another size."""
    import onnxruntime as ort
    import torch

    from medlens import load_bundle
    from medlens.io import read_image
    from medlens.tasks.segmentation.preprocessing import prepare_image

    dataset, run = tmp_path / "ds", tmp_path / "run"
    assert main(["import", "msd", str(small_msd(6)), "--out", str(dataset), "--test-fraction", "0.2"]) == 0
    tiny = [*TINY, "--set", "segmentation.check_largest_component=false"]
    assert main(["train", str(dataset), "--out", str(run), "--folds", "2", *tiny]) == 0
    spec = yaml.safe_load((run / "bundle" / "bundle.yaml").read_text())
    assert len(spec["members"]) == 2 and (run / "fold_1" / "summary.json").is_file()
    assert "not scored on validation (train.explain_images=0)" in spec["explanation"]["why"]  # the plan said so
    assert main(["export", str(run), "--out", str(tmp_path / "onnx")]) == 0
    spec = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert spec["task"] == "segmentation" and spec["members"] == 2 and spec["inputs"][0]["name"] == "patch"
    assert spec["preprocessing"]["normalization"] == ["zscore"] and spec["preprocessing"]["patch_size"] == [16, 16, 16]
    bundle = load_bundle(run)
    case = sorted((small_msd(6) / "imagesTr").iterdir())[0]
    volume = prepare_image(read_image(case), bundle.plan).tensor[None]  # (1, C, *spatial) on the network's grid
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for size in ([16, 16, 16], [32, 16, 24]):
        patch = volume[:, :, : size[0], : size[1], : size[2]].contiguous()
        assert list(patch.shape[2:]) == size
        (got,) = session.run(None, {"patch": patch.numpy()})
        with torch.no_grad():
            want = torch.stack([torch.softmax(net(patch), 1) for net in bundle.networks()]).mean(0).numpy()
        assert got.shape == (1, 3, *size) and np.abs(got - want).max() < 1e-4


def test_predict_dicom_series_writes_a_valid_seg(hippo_run: Path, mr_crop: Path, tmp_path: Path, dciodvfy: str) -> None:
    """predict --dicom-seg on a real DICOM series: the SEG passes dciodvfy, references the series, and its
    frames hold the predicted mask of the slices they reference (the NIfTI mask written beside it)."""
    import subprocess

    import highdicom as hd
    import pydicom

    from medlens.io import read_image
    from medlens.io.dicom_geometry import LPS_TO_RAS

    plain = tmp_path / "plain"
    assert main(["-q", "predict", str(hippo_run / "run"), str(mr_crop), "--out", str(plain)]) == 0
    assert (plain / "mr_crop_mask.nii.gz").is_file() and not list(plain.glob("*.dcm"))  # no SEG unless asked
    out = tmp_path / "pred"
    assert main(["predict", str(hippo_run / "run"), str(mr_crop), "--out", str(out), "--dicom-seg"]) == 0
    mask = np.asarray(nib.load(str(out / "mr_crop_mask.nii.gz")).dataobj)
    seg_path = out / "mr_crop_seg.dcm"
    result = subprocess.run([dciodvfy, str(seg_path)], capture_output=True, text=True, check=False)
    assert not [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    seg = hd.seg.segread(seg_path)
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in mr_crop.iterdir()}
    assert seg.number_of_segments == 2
    assert {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence} == {
        pydicom.dcmread(next(iter(sources.values())), stop_before_pixels=True).SeriesInstanceUID
    }
    image = read_image(mr_crop)
    assert mask.shape[:3] == image.spatial_shape
    slice_of = {}
    for uid, path in sources.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        position = LPS_TO_RAS @ np.array([float(v) for v in ds.ImagePositionPatient] + [1.0])
        slice_of[uid] = round(float((np.linalg.inv(image.affine) @ position)[2]))
    assert sorted(slice_of.values()) == list(range(24))
    uids = sorted(sources, key=slice_of.get)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    for k, uid in enumerate(uids):
        assert np.array_equal(pixels[k], mask[:, :, slice_of[uid]].T), f"slice {k}"
    print("foreground voxels in the predicted mask:", int((mask > 0).sum()))


def test_predict_dicom_seg_on_a_series_without_type2_attributes(
    hippo_run: Path, mr_crop: Path, tmp_path: Path, dciodvfy: str
) -> None:
    """Issue 16 item 10 through the command line: archives de-identified by other tools drop PatientBirthDate,
    PatientSex, StudyID, ... ; predict --dicom-seg on such a real series writes a SEG that passes dciodvfy, with
    those attributes present and empty (it used to end in 'internal error: AttributeError ... PatientBirthDate')."""
    import subprocess

    import pydicom

    stripped = ("PatientBirthDate", "PatientSex", "StudyID", "ReferringPhysicianName", "AccessionNumber", "StudyTime")
    for path in mr_crop.iterdir():
        ds = pydicom.dcmread(path)
        for keyword in stripped:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(hippo_run / "run"), str(mr_crop), "--out", str(out), "--dicom-seg"]) == 0
    seg_path = out / "mr_crop_seg.dcm"
    result = subprocess.run([dciodvfy, str(seg_path)], capture_output=True, text=True, check=False)
    assert not [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    seg = pydicom.dcmread(seg_path)
    for keyword in stripped:
        assert keyword in seg and str(seg.data_element(keyword).value) == "", keyword
