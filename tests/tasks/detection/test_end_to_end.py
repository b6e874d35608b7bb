"""Detection end to end on a few real BCCD images (the shared ``bccd_run``): train, evaluate, predict, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medlens.cli.main import main
from medlens.core.errors import InputError


@pytest.fixture()
def run_dir(bccd_run: Path) -> Path:
    return bccd_run / "run"


@pytest.fixture()
def run_dataset(bccd_run: Path):  # type: ignore[no-untyped-def]
    from medlens.data.dataset import load_dataset

    return load_dataset(bccd_run / "ds")


def test_train_writes_a_bundle_with_chosen_thresholds(run_dir: Path) -> None:
    from medlens import load_bundle

    summary = json.loads((run_dir / "train_summary.json").read_text())
    member = summary["member_summaries"][0]
    assert member["epochs"] == 12 and "best_val_map50" in member and summary["monitor"] == "val_map50"
    bundle = load_bundle(run_dir)
    d = bundle.plan.detection
    assert d is not None and d.nms_iou in d.nms_candidates and d.score_threshold is not None
    assert bundle.threshold == d.score_threshold
    assert (run_dir / "bundle" / "model_card.md").read_text().startswith("# Model card")


def test_evaluate_writes_metrics_and_report(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", str(run_dir), "--split", "val", "--out", str(out), "--bootstrap", "50"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("map", "map50", "map75", "mar100"):
        assert 0.0 <= metrics[key]["value"] <= 1.0 and len(metrics[key]["ci95"]) == 2
    assert set(metrics["ap50_per_class"]) == {"Platelets", "RBC", "WBC"}
    assert metrics["n_images"] == 2 and metrics["dataset"]["split"] == "val"
    assert metrics["map50"]["value"] > 0  # the trained detector finds cells
    assert metrics["member_agreement"]["mean"] == 1.0 and metrics["bootstrap"]["unit"] == "case"
    worst = metrics["worst_cases"]  # the images with the most objects missed, worst first
    assert worst and worst[0]["metric"] == "objects missed" and 0 <= worst[-1]["value"] <= worst[0]["value"]
    assert all(w["value"] <= w["objects"] for w in worst)
    html = (out / "report.html").read_text()
    assert "mAP@.5" in html and "data:image/png;base64" in html
    results = json.loads((out / "coco_results.json").read_text())
    assert all(len(r["bbox"]) == 4 and r["category_id"] in (1, 2, 3) for r in results)


def test_predict_png_and_dicom(run_dir: Path, run_dataset, data_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Boxes on a training picture (non-empty: the model was trained on it), and a DICOM slice is predicted too."""
    picture = Path(run_dataset.split("train")[0].image[0])
    dicom = data_root / "dicom" / "pydicom_testdata" / "CT_small.dcm"
    out = tmp_path / "pred"
    assert main(["predict", str(run_dir), str(picture), str(dicom), "--out", str(out)]) == 0
    row = json.loads((out / f"{picture.stem}.json").read_text())
    assert row["image_size"] == [480, 640]
    assert len(row["boxes"]) > 0 and "RBC" in {b["label"] for b in row["boxes"]}
    assert all(b["score"] >= row["score_threshold"] for b in row["boxes"])
    assert all(b["member_agreement"] == 1.0 for b in row["boxes"])  # one member: it found every box it reports
    assert all(0 <= b["box"][0] <= b["box"][2] <= 640 for b in row["boxes"])
    assert (out / f"{picture.stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "CT_small.png").is_file() and (out / "coco_results.json").is_file()


def test_onnx_export_gives_the_bundle_detections(run_dir: Path, run_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ONNX Runtime, run by this test, returns the boxes of ``bundle.predict`` on real images of two sizes."""
    import onnxruntime as ort

    from medlens import load_bundle
    from medlens.core.image import Image, default_affine
    from medlens.io import read_image

    assert main(["export", str(run_dir), "--out", str(tmp_path / "onnx")]) == 0
    exported = json.loads((tmp_path / "onnx" / "export.json").read_text())
    bundle = load_bundle(run_dir)
    assert exported["outputs"] == ["boxes", "scores", "labels"] and exported["class_names"] == bundle.class_names
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    picture = read_image(Path(run_dataset.split("train")[0].image[0])).as_2d()
    pixels = picture.array.astype(np.float32)  # (C, H, W) raw values as read, as export.json says
    assert pixels.shape[0] == exported["inputs"][0]["shape"][0]
    for x in (pixels, np.ascontiguousarray(pixels[:, 40:400, 100:600])):  # 480x640, then 360x500
        boxes, scores, labels = session.run(None, {"image": x})
        want = bundle.predict(Image(x, default_affine(2))).candidates
        assert len(boxes) == len(want.labels) > 0
        assert np.abs(boxes - want.boxes).max() < 0.5
        assert want.scores is not None and np.abs(scores - want.scores).max() < 1e-3
        assert np.array_equal(labels, want.labels) and labels.min() >= 0


def test_evaluate_on_a_dataset_with_other_classes_is_refused(run_dir: Path, run_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import yaml

    other = tmp_path / "other"
    shutil.copytree(run_dataset.root, other)
    raw = yaml.safe_load((other / "dataset.yaml").read_text())
    raw["classes"] = ["a", "b", "c"]
    (other / "dataset.yaml").write_text(yaml.safe_dump(raw))
    import medlens

    with pytest.raises(InputError, match=r"classes \['a', 'b', 'c'\]; the model is detection"):
        medlens.evaluate(run_dir, tmp_path / "e", dataset=other, split="val")
    assert not (tmp_path / "e").exists()


def test_pretrained_from_a_local_resnet_checkpoint(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torchvision

    from medlens.tasks.detection.module import build_network
    from medlens.training.overrides import apply_overrides
    from medlens.workflows.planning import make_plan

    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    plan = apply_overrides(make_plan(tiny_dataset), [f"model.pretrained={tmp_path / 'resnet18.pth'}"])
    net = build_network(plan)
    assert torch.equal(net.backbone.body.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "det.ckpt")
    again = build_network(apply_overrides(plan, [f"model.pretrained={tmp_path / 'det.ckpt'}"]))
    for key, value in net.state_dict().items():  # a whole detector checkpoint (Lightning layout) loads fully
        assert torch.equal(again.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["retinanet", "fcos", "fasterrcnn"])
def test_every_detector_trains_a_step_and_detects(name: str) -> None:
    from medlens.models import create_model

    torch.manual_seed(0)
    net = create_model(name, output="boxes", spatial_dims=2, in_channels=1, num_classes=2, input_size=[64, 96])
    images = [torch.rand(1, 60, 90) * 255, torch.rand(1, 70, 80) * 255]
    targets = [
        {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},  # a negative image
    ]
    losses = net.train()(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    with torch.no_grad():
        out = net.eval()(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4


def test_augmentation_keeps_boxes_valid(tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from medlens.tasks.detection.augment import augment_boxes
    from medlens.tasks.detection.loading import load_box_images
    from medlens.training.overrides import apply_overrides
    from medlens.workflows.planning import make_plan

    plan = apply_overrides(
        make_plan(tiny_dataset), ["detection.crop_probability=1.0", "augment.spatial_probability=1.0"]
    )
    item = load_box_images(tiny_dataset, tiny_dataset.split("train")[:1], plan)[0]
    torch.manual_seed(0)
    changed = False
    for _ in range(10):
        image, boxes, labels = augment_boxes(item.image, item.boxes, item.labels, plan)
        h, w = image.shape[1:]
        assert len(boxes) == len(labels) and image.dtype == torch.float32
        assert (boxes[:, 2] - boxes[:, 0] >= 2).all() and (boxes[:, 3] - boxes[:, 1] >= 2).all()
        assert (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all() and (boxes >= 0).all()
        changed |= image.shape != item.image.shape or not np.array_equal(boxes.numpy(), item.boxes.numpy())
    assert changed


def test_member_agreement_counts_the_members_that_found_a_box() -> None:
    from medlens.tasks.detection.prediction import member_agreement

    box = torch.tensor([[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 140.0, 140.0]])
    merged = {"boxes": box, "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}
    same = {"boxes": box + 2, "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}
    other_class = {"boxes": box, "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.9, 0.8])}
    too_weak = {"boxes": box, "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.1, 0.9])}
    agreement = member_agreement(merged, [same, other_class, too_weak], score=0.5)
    assert agreement.tolist() == pytest.approx([1 / 3, 2 / 3])  # box 1: only "same"; box 2: "same" and "too_weak"
