"""Segment images with a bundle, and measure a bundle on a dataset.

The path from a file to a mask is the same everywhere: read, normalise and resample to the plan's spacing,
Gaussian sliding window over every member (and mirrored copies with test-time augmentation), probabilities
resampled back to the input's own grid, arg-max, keep-largest-component where validation chose it.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.atomic import atomic_dir
from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)
NSD_TOLERANCE_MM = 1.0
WORST_SHOWN = 3


def segment_image(bundle: Bundle, image: Image, *, tta: bool = False) -> tuple[np.ndarray, dict[str, float]]:
    """Class indices on the image's own grid ``(*spatial)`` uint8, and the seconds spent per stage.

    Example:
        >>> labels, seconds = segment_image(load_bundle("runs/hippo"), read_image("case.nii.gz"))  # doctest: +SKIP
    """
    from medlens.tasks.segmentation import keep_largest_component, sliding_window_probabilities
    from medlens.transforms.segmentation import preprocess_image, to_input_grid

    plan = bundle.plan
    if plan.segmentation is None:
        raise InputError(bundle.root, "not a segmentation bundle (no plan.segmentation)")
    if plan.spatial_dims == 2:
        image = image.as_2d()
    if image.spatial_dims != plan.spatial_dims:
        raise InputError(
            str(image.meta.get("source", "image")), f"{image.spatial_dims}D image, the model is {plan.spatial_dims}D"
        )
    t0 = time.perf_counter()
    x = torch.from_numpy(preprocess_image(image, plan))
    t1 = time.perf_counter()
    probs = sliding_window_probabilities(bundle.networks(), x, plan, tta=tta)
    t2 = time.perf_counter()
    labels = to_input_grid(probs, image.spatial_shape).argmax(0).numpy().astype(np.uint8)
    if plan.segmentation.keep_largest_component:
        labels = keep_largest_component(labels, plan.segmentation.keep_largest_component)
    t3 = time.perf_counter()
    return labels, {"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2}


def predict_segmentation(
    bundle: Bundle,
    paths: Sequence[Path],
    out: str | Path,
    *,
    tta: bool = False,
    dicom_seg: bool = False,
    overwrite: bool = True,
) -> list[dict[str, Any]]:
    """Segment every input; write masks (NIfTI in 3D, PNG of class indices in 2D), overlays, DICOM SEG.

    Returns:
        One row per input: ``input``, ``mask``, ``overlay``, ``dicom_seg`` (or None), ``volume`` per class (mL
        in 3D, mm² in 2D), ``seconds``.
    """
    from medlens.io import read_image, write_image
    from medlens.workflows.segmentation_report import png_bytes, write_overlay

    rows: list[dict[str, Any]] = []
    names = bundle.class_names
    with atomic_dir(out, overwrite=overwrite) as tmp:
        used: set[str] = set()
        for path in paths:
            start = time.perf_counter()
            image = read_image(path)
            if bundle.plan.spatial_dims == 2:
                image = image.as_2d()
            labels, _ = segment_image(bundle, image, tta=tta)
            stem = _unique_stem(Path(path), used)
            if labels.ndim == 3:
                mask_path = write_image(Image(labels[None], image.affine, "label"), tmp / f"{stem}_mask.nii.gz")
            else:
                mask_path = tmp / f"{stem}_mask.png"
                mask_path.write_bytes(png_bytes(labels))
            overlay_path = write_overlay(image, labels, tmp / f"{stem}_overlay.png")
            seg_path = None
            if dicom_seg:
                seg_path = _write_seg(labels, image, Path(path), tmp / f"{stem}_seg.dcm", names)
            unit = float(np.prod(image.spacing)) / (1000.0 if labels.ndim == 3 else 1.0)
            counts = np.bincount(labels.ravel(), minlength=len(names))
            rows.append(
                {
                    "input": str(path),
                    "mask": str(Path(out) / mask_path.name),
                    "overlay": str(Path(out) / overlay_path.name),
                    "dicom_seg": str(Path(out) / seg_path.name) if seg_path else None,
                    "volume": {n: round(float(counts[k]) * unit, 4) for k, n in enumerate(names) if k},
                    "volume_unit": "mL" if labels.ndim == 3 else "mm2",
                    "seconds": round(time.perf_counter() - start, 3),
                }
            )
        with open(tmp / "predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "mask", "dicom_seg", *[f"volume_{n}" for n in names[1:]]])
            for row in rows:
                writer.writerow([row["input"], row["mask"], row["dicom_seg"] or "", *row["volume"].values()])
    return rows


def _write_seg(labels: np.ndarray, image: Image, source: Path, path: Path, names: list[str]) -> Path | None:
    from medlens.io import find_series
    from medlens.io.dicom_seg import write_dicom_seg

    is_dicom = image.meta.get("source_format") == "dicom" or source.is_dir()
    if not is_dicom or labels.ndim != 3:
        log.warning("%s: DICOM SEG needs a DICOM volume as input; not written", source)
        return None
    files = list(find_series(source)[0].files) if source.is_dir() else [source]
    return write_dicom_seg(labels, image, files, path, names)


def evaluate_segmentation(
    bundle: Bundle,
    dataset_dir: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    n_bootstrap: int = 1000,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Segment a split and measure it: ``metrics.json``, ``per_case.csv`` and ``report.html`` in ``out``.

    Example:
        >>> evaluate_segmentation(load_bundle("runs/hippo"), "datasets/hippo", "runs/hippo/eval")  # doctest: +SKIP
    """
    from medlens.data.dataset import load_dataset
    from medlens.data.segmentation_cases import label_values_of, read_case
    from medlens.evaluate.segmentation import case_metrics, summarize
    from medlens.workflows.segmentation_report import comparison, write_report

    data = load_dataset(dataset_dir)
    if data.spec.classes != bundle.class_names:
        raise InputError(dataset_dir, f"classes {data.spec.classes} differ from the model's {bundle.class_names}")
    cases = data.split(split)
    if not cases:
        raise InputError(dataset_dir, f"no cases in split {split!r}")
    values = label_values_of(data.spec.source)
    rows: list[dict[str, Any]] = []
    kept: dict[str, tuple[Image, np.ndarray, np.ndarray]] = {}
    seconds = 0.0
    for case in cases:
        image, mask = read_case(
            data.image_paths(case),
            data.root / case.target,
            data.spec.spatial_dims,
            data.num_classes,
            case.case_id,
            values,
        )
        start = time.perf_counter()
        pred, _ = segment_image(bundle, image)
        seconds += time.perf_counter() - start
        row = case_metrics(pred, mask.array[0], data.num_classes, image.spacing, NSD_TOLERANCE_MM)
        rows.append({"case_id": case.case_id, **row})
        kept[case.case_id] = (image, mask.array[0], pred)
        mean_dice = float(np.nanmean(row["dice"])) if not np.all(np.isnan(row["dice"])) else 1.0
        rows[-1]["mean_dice"] = mean_dice
        if len(kept) > WORST_SHOWN:  # keep only the worst few cases' pixels in memory
            best = max(kept, key=lambda cid: next(r["mean_dice"] for r in rows if r["case_id"] == cid))
            del kept[best]
    metrics = summarize(
        [{k: r[k] for k in ("dice", "iou", "hd95", "asd", "nsd")} for r in rows],
        bundle.class_names,
        n_bootstrap=n_bootstrap,
    )
    metrics["nsd_tolerance_mm"] = NSD_TOLERANCE_MM
    metrics["seconds_per_case"] = round(seconds / len(cases), 4)
    metrics["dataset"] = {"path": str(data.root.resolve()), "name": data.spec.name, "split": split}
    metrics["members"] = len(bundle.members)
    seg = bundle.plan.segmentation
    if seg is None:
        raise InputError(bundle.root, "not a segmentation bundle (no plan.segmentation)")
    metrics["keep_largest_component"] = seg.keep_largest_component
    worst = sorted(kept, key=lambda cid: next(r["mean_dice"] for r in rows if r["case_id"] == cid))
    pictures = [(cid, comparison(*kept[cid])) for cid in worst]
    context = {
        "model": f"{bundle.plan.model.name}, {len(bundle.members)} member(s)",
        "dataset": f"{data.spec.name} ({split}, {len(cases)} cases)",
        "patch / spacing": f"{bundle.plan.data.input_size} at {seg.target_spacing} mm",
        "empty-mask convention": "class absent from both: left out; from one: Dice 0, distances = image diagonal",
    }
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _write_per_case(tmp / "per_case.csv", rows, bundle.class_names[1:])
        write_report(tmp / "report.html", metrics, rows, pictures, f"{data.spec.name}: {split} set", context)
    log.info("%s: mean Dice %.4f over %d cases", split, metrics["dice"]["value"] or float("nan"), len(cases))
    return metrics


def _write_per_case(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    metrics = ("dice", "iou", "hd95", "asd", "nsd")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", *[f"{m}_{n}" for m in metrics for n in names]])
        for row in rows:
            writer.writerow([row["case_id"], *[f"{v:.6g}" for m in metrics for v in row[m]]])


def _unique_stem(path: Path, used: set[str]) -> str:
    stem = path.name.split(".")[0] or "input"
    candidate, i = stem, 1
    while candidate in used:
        candidate, i = f"{stem}_{i}", i + 1
    used.add(candidate)
    return candidate
