"""Detection workflows: train (one or several seeds, thresholds chosen on validation), evaluate, predict.

Called by :mod:`medlens.workflows.train`, :mod:`~medlens.workflows.evaluate` and :mod:`~medlens.workflows.predict`
when the plan's task is ``detection``; the run folder and bundle have the same layout as for every task.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.atomic import atomic_dir, write_text_atomic
from medlens.core.errors import InputError
from medlens.data.dataset import Dataset, load_dataset
from medlens.evaluate.detection import ImageBoxes
from medlens.models.bundle import Bundle
from medlens.plan.detection_schema import DetectionPlan
from medlens.plan.schema import Plan

log = logging.getLogger(__name__)


def train_detection(
    dataset: Dataset, plan: Plan, out: Path, *, seeds: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Train ``seeds`` detectors into ``out/seed_*``, choose NMS and score thresholds on validation, write the
    bundle and ``train_summary.json``; return the summary."""
    from medlens.data.box_loading import load_box_images, make_box_loader
    from medlens.models.bundle import save_bundle
    from medlens.tasks.detection import DetectionModule, build_network
    from medlens.tasks.fitting import best_weights, fit_seed

    if plan.detection is None:
        plan = plan.model_copy(update={"detection": DetectionPlan()})
    items = {s: load_box_images(dataset, dataset.split(s), plan) for s in ("train", "val")}
    summaries, states = [], []
    for seed in range(seeds):
        seeded = plan.model_copy(update={"train": plan.train.model_copy(update={"seed": seed})})
        t = seeded.train
        train_loader = make_box_loader(
            items["train"], seeded, augment=True, batch_size=t.batch_size, shuffle=True, seed=seed
        )
        val_loader = make_box_loader(
            items["val"], seeded, augment=False, batch_size=max(t.batch_size, 4), shuffle=False
        )
        summary = fit_seed(
            lambda budget, p=seeded: DetectionModule(p.model_dump(), budget=budget),  # type: ignore[misc]
            train_loader,
            val_loader,
            seeded,
            out / f"seed_{seed}",
            seed,
            progress=progress,
            monitor_mode="max",
        )
        summaries.append(summary)
        states.append(best_weights(out / f"seed_{seed}"))
    nets = []
    for state in states:
        net = build_network(plan.model_copy(update={"model": plan.model.model_copy(update={"pretrained": None})}))
        net.load_state_dict(state)
        nets.append(net.eval())
    chosen = choose_thresholds(nets, items["val"], plan)
    final = plan.model_copy(update={"detection": plan.detection.model_copy(update=chosen["detection"])})  # type: ignore[union-attr]
    scores = [s.get(f"best_{plan.train.monitor}") for s in summaries]
    summary = {
        "dataset": str(dataset.root.resolve()),
        "seeds": summaries,
        "best_val_map50_per_seed": scores,
        "val_after_threshold_choice": chosen["val"],
        "nms_iou": chosen["detection"]["nms_iou"],
        "score_threshold": chosen["detection"]["score_threshold"],
        "train_seconds_per_seed": [s["train_seconds"] for s in summaries],
    }
    info = {
        "dataset": dataset.spec.name,
        "modality": dataset.spec.modality,
        "n_train": len(items["train"]),
        "n_val": len(items["val"]),
        "val_map50": chosen["val"]["map50"],
        "val_map": chosen["val"]["map"],
    }
    save_bundle(
        out / "bundle",
        final,
        states,
        threshold=chosen["detection"]["score_threshold"],
        info=info,
        card=_model_card(dataset, final, summary),
    )
    write_text_atomic(out / "train_summary.json", json.dumps(summary, indent=2))
    return summary


def choose_thresholds(nets: list[torch.nn.Module], val_items: list[Any], plan: Plan) -> dict[str, Any]:
    """Pick the NMS IoU with the best validation mAP@.5 (then mAP), then the score with the best F1 at IoU .5."""
    from medlens.evaluate.detection import choose_score_threshold, detection_metrics
    from medlens.tasks.detection import detect_raw, merge, to_image_boxes

    d = plan.detection or DetectionPlan()
    images = [item.image for item in val_items]
    raw = [detect_raw(net, images) for net in nets]  # (members, images)
    truths = [ImageBoxes(i.boxes.numpy().astype(np.float64), i.labels.numpy()) for i in val_items]
    results = []
    for iou in sorted(set(d.nms_candidates) | {d.nms_iou}):
        preds = [to_image_boxes(merge([r[i] for r in raw], iou, d.detections_per_image)) for i in range(len(images))]
        m = detection_metrics(preds, truths, plan.class_names, n_bootstrap=0)
        key = (m["map50"]["value"] or 0.0, m["map"]["value"] or 0.0, -abs(iou - 0.5))  # ties: nearest to 0.5
        log.info("validation with NMS IoU %.2f: mAP@.5 %.4f, mAP %.4f", iou, key[0], key[1])
        results.append((key, iou, preds))
    best, best_iou, best_preds = max(results, key=lambda r: r[0])
    score = d.score_threshold
    if score is None:
        score = round(choose_score_threshold(best_preds, truths, len(plan.class_names)), 4)
    return {
        "detection": {"nms_iou": float(best_iou), "score_threshold": float(score)},
        "val": {"map50": best[0], "map": best[1]},
    }


def detect_images(bundle: Bundle, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The bundle's detections (all members, merged) for images (C, H, W) in raw units, in their pixels."""
    from medlens.tasks.detection import detect_raw, merge

    d = bundle.plan.detection or DetectionPlan()
    raw = [detect_raw(net, images) for net in bundle.networks()]
    return [merge([r[i] for r in raw], d.nms_iou, d.detections_per_image) for i in range(len(images))]


def read_detection_image(path: Path, channels: int) -> torch.Tensor:
    """A 2D image file as the detector's input (C, H, W) in raw units, with ``channels`` channels."""
    from medlens.data.box_loading import image_tensor
    from medlens.io import read_image

    image = read_image(path).as_2d()
    if image.spatial_dims != 2:
        raise InputError(path, f"a {image.spatial_dims}D image; this detector takes 2D images")
    return image_tensor(image.array, channels, str(path))


def evaluate_detection(
    bundle: Bundle, dataset_dir: str | Path, out: str | Path, *, split: str = "test", n_bootstrap: int = 1000
) -> dict[str, Any]:
    """COCO metrics with bootstrap intervals over images on ``split``; metrics.json, report.html, predictions.

    Example:
        >>> from medlens.models.bundle import load_bundle
        >>> bundle = load_bundle("runs/bccd")  # doctest: +SKIP
        >>> evaluate_detection(bundle, "datasets/bccd", "runs/bccd/eval", split="val")  # doctest: +SKIP
    """
    from medlens.data.boxes import read_boxes
    from medlens.evaluate.detection import detection_metrics, misses_per_image, operating_point
    from medlens.evaluate.detection_report import write_detection_report
    from medlens.tasks.detection import to_image_boxes

    data = load_dataset(dataset_dir)
    if data.spec.task != "detection" or data.spec.classes != bundle.class_names:
        raise InputError(
            dataset_dir, f"{data.spec.task} classes {data.spec.classes} differ from the model's {bundle.class_names}"
        )
    cases = data.split(split)
    if not cases:
        raise InputError(dataset_dir, f"no cases in split {split!r}")
    preds, truths, paths = [], [], []
    for case in cases:
        path = data.image_paths(case)[0]
        if not path.is_file():
            raise InputError(path, f"image of case {case.case_id} missing")
        boxes, labels, _ = read_boxes(data, case)
        preds.append(to_image_boxes(detect_images(bundle, [read_detection_image(path, bundle.plan.data.channels)])[0]))
        truths.append(ImageBoxes(boxes.astype(np.float64), labels))
        paths.append(path)
    metrics = detection_metrics(preds, truths, bundle.class_names, n_bootstrap=n_bootstrap)
    score = float(bundle.threshold if bundle.threshold is not None else 0.5)
    metrics["n_cases"] = len(cases)
    metrics["operating_point"] = operating_point(preds, truths, len(bundle.class_names), score)
    metrics["dataset"] = {"path": str(data.root.resolve()), "name": data.spec.name, "split": split}
    metrics["model"] = {
        "name": bundle.plan.model.name,
        "members": len(bundle.members),
        "input_size": bundle.plan.data.input_size,
    }
    misses = misses_per_image(preds, truths, len(bundle.class_names), score)
    clean = {k: v for k, v in metrics.items() if not k.startswith("_")}
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(clean, indent=2))
        (tmp / "coco_results.json").write_text(json.dumps(coco_results(preds, [c.case_id for c in cases])))
        write_detection_report(
            tmp, metrics, preds, truths, paths, misses, bundle.class_names, score,
            title=f"{data.spec.name}: {split} set ({len(cases)} images)",
        )  # fmt: skip
    return clean


def coco_results(preds: list[ImageBoxes], names: list[str]) -> list[dict[str, Any]]:
    """Detections in COCO's results format; ``image_id`` counts from 1 in input order, ``category_id`` from 1."""
    rows = []
    for image_id, (pred, name) in enumerate(zip(preds, names, strict=True), start=1):
        for box, label, score in zip(
            pred.boxes, pred.labels, pred.scores if pred.scores is not None else [], strict=True
        ):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            bbox = [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]
            row = {"image_id": image_id, "file": name, "category_id": int(label) + 1, "bbox": bbox}
            rows.append(row | {"score": round(float(score), 5)})
    return rows


def predict_detection(
    bundle: Bundle, paths: list[Path], out: str | Path, *, overwrite: bool = True
) -> list[dict[str, Any]]:
    """Detect objects in each image: ``<name>.json`` (boxes above the operating score), ``<name>.png`` overlays,
    ``coco_results.json`` (every box above the evaluation score, COCO format), ``images.json`` (its ids) and
    ``predictions.csv`` (boxes per class and image).

    Example:
        >>> from medlens.models.bundle import load_bundle
        >>> predict_detection(load_bundle("runs/bccd"), [Path("cells.jpg")], "predictions")  # doctest: +SKIP
    """
    from medlens.evaluate.detection_report import overlay_png
    from medlens.tasks.detection import to_image_boxes
    from medlens.workflows.predict import _unique_stem

    score = float(bundle.threshold if bundle.threshold is not None else 0.5)
    names = bundle.class_names
    rows: list[dict[str, Any]] = []
    preds: list[ImageBoxes] = []
    stems: list[str] = []
    used: set[str] = set()
    images: dict[str, bytes] = {}
    for path in paths:
        image = read_detection_image(path, bundle.plan.data.channels)
        pred = to_image_boxes(detect_images(bundle, [image])[0])
        keep = pred.scores >= score
        boxes = [
            {
                "box": [round(float(v), 2) for v in b],
                "label": int(k),
                "class": names[int(k)],
                "score": round(float(s), 5),
            }
            for b, k, s in zip(pred.boxes[keep], pred.labels[keep], pred.scores[keep], strict=True)
        ]
        rows.append({"input": str(path), "image_size": list(image.shape[1:]), "score_threshold": score, "boxes": boxes})
        preds.append(pred)
        stem = _unique_stem(path, used)
        stems.append(stem)
        images[stem] = overlay_png(
            image, ImageBoxes(pred.boxes[keep], pred.labels[keep], pred.scores[keep]), None, names
        )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for stem, row in zip(stems, rows, strict=True):
            (tmp / f"{stem}.json").write_text(json.dumps(row, indent=2))
            (tmp / f"{stem}.png").write_bytes(images[stem])
        (tmp / "coco_results.json").write_text(json.dumps(coco_results(preds, [str(p) for p in paths])))
        with open(tmp / "predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "n_boxes", *[f"n_{n}" for n in names]])
            for row in rows:
                found = [sum(b["label"] == k for b in row["boxes"]) for k in range(len(names))]
                writer.writerow([row["input"], len(row["boxes"]), *found])
        (tmp / "images.json").write_text(
            json.dumps([{"id": i, "file": str(p)} for i, p in enumerate(paths, 1)], indent=2)
        )
    return rows


def _model_card(dataset: Dataset, plan: Plan, summary: dict[str, Any]) -> str:
    d = plan.detection or DetectionPlan()
    start = f"from {plan.model.pretrained}" if plan.model.pretrained else "trained from scratch"
    val = summary["val_after_threshold_choice"]
    n_train, n_val = len(dataset.split("train")), len(dataset.split("val"))
    return "\n".join(
        [
            f"# Model card: {dataset.spec.name} detection",
            "",
            f"- Task: 2D object detection, classes: {', '.join(plan.class_names)}",
            f"- Network: {plan.model.name} {plan.model.kwargs}, input {plan.data.input_size} x {plan.data.channels}"
            f" channel(s), {start}",
            f"- Training data: {dataset.spec.name} ({dataset.spec.modality}), {n_train} training and {n_val} validation"
            " images",
            f"- Ensemble of {len(summary['seeds'])} seed(s); validation mAP@.5 {val['map50']:.4f}, mAP@[.5:.95]"
            f" {val['map']:.4f}",
            f"- Chosen on validation: NMS IoU {d.nms_iou}, operating score {d.score_threshold} (best F1 at IoU 0.5)",
            "",
            "## Intended use and limits",
            "",
            "Research use. Validated only on data like the training set above; test metrics with 95% confidence",
            "intervals are in the evaluation report (`medlens evaluate`). Not a medical device.",
            "",
        ]
    )
