"""What the commands write agrees with independent references, computed by the test from the written files:

- pycocotools' COCOeval on the ``coco_results.json`` that ``medlens evaluate`` writes, against the dataset's boxes
  turned into COCO ground truth, gives the mAP of ``metrics.json``;
- MONAI's DiceMetric on the masks ``medlens predict`` writes (read back with nibabel), against the label maps,
  gives the Dice of ``per_case.csv``, case by case;
- SimpleITK reads the NRRD and MHA files of ``medlens convert`` with the array and geometry it reads from the
  DICOM series itself;
- ONNX Runtime, run here on the exported ``model.onnx`` (with the pre- and post-processing ``export.json``
  describes), gives the label map of ``bundle.predict`` (classification and detection: see their end-to-end tests).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medlens.cli.main import main

pytestmark = pytest.mark.integration


def _coco_ground_truth(dataset_dir: Path, case_ids: list[str]) -> dict:
    """The dataset's boxes (its own boxes files, read as JSON) as a COCO ground-truth dictionary."""
    import yaml

    spec = yaml.safe_load((dataset_dir / "dataset.yaml").read_text())
    rows = {r["case_id"]: r for r in csv.DictReader(open(dataset_dir / spec.get("manifest", "manifest.csv")))}
    images, annotations = [], []
    for image_id, case_id in enumerate(case_ids, start=1):
        content = json.loads((dataset_dir / rows[case_id]["target"]).read_text())
        height, width = content["image_size"]
        images.append({"id": image_id, "width": width, "height": height})
        for item in content["boxes"]:
            x1, y1, x2, y2 = item["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": item["label"] + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(spec["classes"])]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_cocoeval_on_the_written_results_gives_the_reported_map(bccd_run: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "eval"
    assert main(["-q", "evaluate", str(bccd_run / "run"), "--split", "all", "--out", str(out), "--bootstrap", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    results = json.loads((out / "coco_results.json").read_text())
    assert results, "the trained detector found nothing to rank"
    files = {r["image_id"]: r["file"] for r in results}
    case_ids = [r["case_id"] for r in csv.DictReader(open(bccd_run / "ds" / "manifest.csv"))]
    assert all(files[i] == case_ids[i - 1] for i in files)  # image ids count cases in manifest order
    gt = COCO()
    gt.dataset = _coco_ground_truth(bccd_run / "ds", case_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{k: v for k, v in r.items() if k != "file"} for r in results])
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats  # mAP@[.5:.95], mAP@.5, mAP@.75, ... for area "all" and 100 detections
    assert metrics["n_images"] == len(case_ids) == 6
    assert metrics["map"]["value"] == pytest.approx(stats[0], abs=1e-4)
    assert metrics["map50"]["value"] == pytest.approx(stats[1], abs=1e-4)
    assert metrics["map75"]["value"] == pytest.approx(stats[2], abs=1e-4)
    assert metrics["map50"]["value"] > 0


def test_monai_dice_on_the_written_masks_gives_the_reported_dice_per_case(hippo_run: Path, tmp_path: Path) -> None:
    import torch
    from monai.metrics import DiceMetric

    evaluation, predictions = tmp_path / "eval", tmp_path / "pred"
    args = ["-q", "evaluate", str(hippo_run / "run"), "--split", "train", "--out", str(evaluation), "--bootstrap", "0"]
    assert main(args) == 0
    rows = {r["case_id"]: r for r in csv.DictReader(open(evaluation / "per_case.csv"))}
    images = [p for p in sorted((hippo_run / "msd" / "imagesTr").iterdir()) if p.name.removesuffix(".nii.gz") in rows]
    assert len(rows) == len(images) == 4
    assert main(["-q", "predict", str(hippo_run / "run"), *map(str, images), "--out", str(predictions)]) == 0
    metric = DiceMetric(include_background=False, reduction="none")
    for image in images:
        case_id = image.name.removesuffix(".nii.gz")
        mask = np.asarray(nib.load(str(predictions / f"{case_id}_mask.nii.gz")).dataobj).astype(np.int64)
        truth = np.asarray(nib.load(str(hippo_run / "msd" / "labelsTr" / image.name)).dataobj).astype(np.int64)
        onehot = [torch.nn.functional.one_hot(torch.from_numpy(a), 3).permute(3, 0, 1, 2)[None] for a in (mask, truth)]
        dice = metric(*onehot)[0].numpy()  # (2,): anterior, posterior
        reported = [float(rows[case_id]["dice_Anterior"]), float(rows[case_id]["dice_Posterior"])]
        np.testing.assert_allclose(reported, dice, atol=1e-5, err_msg=case_id)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    anterior = np.mean([float(r["dice_Anterior"]) for r in rows.values()])
    assert metrics["dice_per_class"]["Anterior"]["value"] == pytest.approx(anterior, abs=1e-5)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_simpleitk_reads_converted_volumes_as_the_series(mr_series_dir: Path, tmp_path: Path, suffix: str) -> None:
    import SimpleITK as sitk

    out = tmp_path / f"mr{suffix}"
    assert main(["-q", "convert", str(mr_series_dir), str(out)]) == 0
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(mr_series_dir)))
    reference = reader.Execute()  # SimpleITK (GDCM) reading the DICOM series itself
    written = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-5)


def test_onnx_runtime_segmentation_gives_the_bundles_label_map(hippo_run: Path, tmp_path: Path) -> None:
    """The patch graph in ONNX Runtime, with the sliding window, inverse resampling and keep-largest-component that
    export.json names, reproduces ``bundle.predict`` on a real case."""
    import onnxruntime as ort
    import torch
    from monai.inferers import sliding_window_inference

    from medlens import load_bundle
    from medlens.io import read_image
    from medlens.tasks.segmentation.inference import keep_largest_component
    from medlens.tasks.segmentation.preprocessing import prepare_image, to_input_grid

    assert main(["-q", "export", str(hippo_run / "run"), "--out", str(tmp_path / "onnx")]) == 0
    spec = json.loads((tmp_path / "onnx" / "export.json").read_text())
    pre = spec["preprocessing"]
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    bundle = load_bundle(hippo_run / "run")
    case = sorted((hippo_run / "msd" / "imagesTr").iterdir())[1]
    image = read_image(case)
    prepared = prepare_image(image, bundle.plan)  # orientation, spacing, normalisation (outside the graph)

    def onnx_net(x: torch.Tensor) -> torch.Tensor:
        (probabilities,) = session.run(None, {spec["inputs"][0]["name"]: x.numpy().astype(np.float32)})
        return torch.log(torch.from_numpy(probabilities).clamp_min(1e-12))  # softmax of these = the probabilities

    window = pre["sliding_window"]
    logits = sliding_window_inference(
        prepared.tensor[None].float(), roi_size=pre["patch_size"], sw_batch_size=4, predictor=onnx_net,
        overlap=window["overlap"], mode=window["mode"],
    )  # fmt: skip
    probabilities = torch.softmax(logits, dim=1)[0]
    labels = to_input_grid(probabilities, prepared, bundle.plan).argmax(0).numpy().astype(np.uint8)
    labels = keep_largest_component(labels, pre["keep_largest_component"])
    want = bundle.predict(case).labels.array[0]
    assert labels.shape == want.shape == image.spatial_shape
    assert (labels == want).mean() > 0.999 and (want > 0).any()
