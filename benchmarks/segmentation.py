"""Segmentation benchmark: MSD Task04 Hippocampus, fixed seeded split, default plan.

Runs the real command line (import msd, plan, train, evaluate) on MEDLENS_DATA/Task04_Hippocampus with a
seeded split of about 162 training, 18 validation and 40 held-out cases, then on the held-out cases:

- **Prediction time**, three ways in the same run: medlens end to end (``bundle.predict(path)`` and the mask
  written as NIfTI: read, reorient, resample, sliding window, invert, arg-max, keep-largest-component, write);
  the same job written the way MONAI's tutorials do it (``LoadImaged`` -> ``Orientationd`` -> ``Spacingd`` ->
  ``NormalizeIntensityd`` -> ``sliding_window_inference`` -> ``Invertd`` -> ``AsDiscreted`` (+
  ``KeepLargestConnectedComponentd`` when the bundle uses it) -> ``SaveImaged``), same network and window
  settings; and the bare network forward passes inside medlens's window.
- **Orientation check**: each case given as the original NIfTI, as a reoriented copy (axes permuted and
  flipped, affine changed to match: the same voxels at the same world positions) and as a DICOM series written
  from that copy. Dice against the case's label per form, and Dice between the forms' masks, compared in the
  canonical (RAS) frame.

Writes benchmarks/results/segmentation.json (``segmentation_short.json`` when the budget is under 45 minutes).

    .venv/bin/python benchmarks/segmentation.py                  # the full 45-minute budget
    .venv/bin/python benchmarks/segmentation.py --budget 10m     # a shorter end-to-end check
    .venv/bin/python benchmarks/segmentation.py --reevaluate     # evaluate, time and check the trained run again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import split_sizes

ROOT = Path(__file__).resolve().parent
N_CASES, N_TEST, N_VAL = 220, 40, 18
TARGET = (
    "mean foreground Dice >= 0.87 within 45 min of training; 3D prediction end to end <= 1.0x the MONAI tutorial "
    "pipeline; orientation: Dice of the three forms within 0.005, masks agreeing with Dice >= 0.99"
)
# a permutation and flips of the index axes: input axis i becomes output axis ORNT[i, 0], flipped where -1
ORNT = [[2, -1], [0, 1], [1, -1]]


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def test_cases(dataset_dir: Path, n_cases: int) -> list[tuple[str, Path, Path]]:
    from medlens.data.dataset import load_dataset

    data = load_dataset(dataset_dir)
    return [(c.case_id, data.image_paths(c)[0], data.root / c.target) for c in data.split("test")[:n_cases]]


def time_prediction(run_dir: Path, dataset_dir: Path, n_cases: int) -> dict[str, Any]:
    """Seconds per case: medlens end to end, the MONAI tutorial pipeline, and medlens's network forward passes."""
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        Invertd,
        KeepLargestConnectedComponentd,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        SaveImaged,
        Spacingd,
    )

    import medlens
    from medlens.core.prediction import SaveOptions

    bundle = medlens.load_bundle(run_dir)
    plan, seg = bundle.plan, bundle.plan.segmentation  # type: ignore[attr-defined]
    net = bundle.networks()[0]
    forward_seconds = [0.0]
    started = [0.0]
    net.register_forward_pre_hook(lambda *_: started.__setitem__(0, time.perf_counter()))
    net.register_forward_hook(
        lambda *_: forward_seconds.__setitem__(0, forward_seconds[0] + time.perf_counter() - started[0])
    )
    pre = Compose(
        [
            LoadImaged("image", image_only=False),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd("image", pixdim=seg.target_spacing, mode="bilinear"),
            NormalizeIntensityd("image", channel_wise=True),
        ]
    )
    post_steps: list[Any] = [
        Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
        AsDiscreted("pred", argmax=True),
    ]
    if seg.keep_largest_component:
        post_steps.append(
            KeepLargestConnectedComponentd(
                "pred", applied_labels=seg.keep_largest_component, independent=True, connectivity=1
            )
        )
    medlens_times, monai_times, forward = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        saver = SaveImaged(
            "pred", output_dir=tmp, output_postfix="seg", resample=False, separate_folder=False, print_log=False
        )
        post = Compose([*post_steps, saver])
        for case_id, path, _ in test_cases(dataset_dir, n_cases):
            forward_seconds[0] = 0.0
            t0 = time.perf_counter()
            prediction = bundle.predict(path)
            prediction.save(Path(tmp), f"{case_id}_medlens", SaveOptions(pictures=False))
            medlens_times.append(time.perf_counter() - t0)
            forward.append(forward_seconds[0])
            t1 = time.perf_counter()
            data = pre({"image": str(path)})
            with torch.inference_mode():
                logits = sliding_window_inference(
                    data["image"][None],
                    plan.data.input_size,
                    seg.sw_batch_size,
                    net,
                    overlap=seg.sw_overlap,
                    mode=seg.sw_mode,
                )
                data["pred"] = MetaTensor(torch.softmax(logits, 1)[0], meta=data["image"].meta, applied_operations=[])
            post(data)
            monai_times.append(time.perf_counter() - t1)
    ours, theirs, fwd = statistics.fmean(medlens_times), statistics.fmean(monai_times), statistics.fmean(forward)
    return {
        "cases_timed": len(medlens_times),
        "medlens_end_to_end_seconds_per_case": round(ours, 4),
        "monai_tutorial_pipeline_seconds_per_case": round(theirs, 4),
        "network_forward_seconds_per_case": round(fwd, 4),
        "medlens_over_monai_tutorial": round(ours / theirs, 3),
        "medlens_over_forward": round(ours / fwd, 3) if fwd else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def orientation_check(run_dir: Path, dataset_dir: Path, n_cases: int) -> dict[str, Any]:
    """The same held-out cases as NIfTI, reoriented NIfTI copy, and DICOM series from the copy."""
    import nibabel as nib
    import numpy as np

    import medlens
    from medlens.core.image import Image
    from medlens.io.dicom_series_writer import write_dicom_series
    from medlens.tasks.segmentation.metrics import dice_per_class

    bundle = medlens.load_bundle(run_dir)
    k = len(bundle.class_names)
    ornt = np.array(ORNT)

    def moved(image: Image) -> Image:
        array = np.stack([nib.orientations.apply_orientation(c, ornt) for c in image.array])
        affine = image.affine @ nib.orientations.inv_ornt_aff(ornt, image.spatial_shape)
        return Image(np.ascontiguousarray(array), affine, image.kind)

    def mean_dice(a: Image, b: Image) -> float:
        x, y = a.reoriented(), b.reoriented()  # compared in the canonical frame
        if x.spatial_shape != y.spatial_shape or not np.allclose(x.affine, y.affine, atol=1e-3):
            raise SystemExit(f"grids differ: {x.spatial_shape} {y.spatial_shape}")
        values = dice_per_class(x.array[0], y.array[0], k)
        return float(np.nanmean(values))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case_id, image_path, label_path in test_cases(dataset_dir, n_cases):
            image = medlens.read_image(image_path)
            truth = medlens.read_image(label_path, kind="label")
            copy = moved(image)
            copy_path = Path(tmp) / f"{case_id}_moved.nii.gz"
            medlens.write_image(copy, copy_path)
            series = Path(tmp) / f"{case_id}_dicom"
            write_dicom_series(copy, series)
            original = bundle.predict(image_path).labels  # type: ignore[attr-defined]
            reoriented = bundle.predict(copy_path).labels  # type: ignore[attr-defined]
            dicom = bundle.predict(series).labels  # type: ignore[attr-defined]
            rows.append(
                {
                    "case": case_id,
                    "copy_orientation": copy.orientation,
                    "dice_original": mean_dice(original, truth),
                    "dice_reoriented": mean_dice(reoriented, truth),
                    "dice_dicom": mean_dice(dicom, truth),
                    "agreement_reoriented": mean_dice(reoriented, original),
                    "agreement_dicom": mean_dice(dicom, original),
                }
            )
    diffs = [
        max(abs(r["dice_reoriented"] - r["dice_original"]), abs(r["dice_dicom"] - r["dice_original"])) for r in rows
    ]
    return {
        "cases": len(rows),
        "axis_transform": ORNT,
        "mean_dice_original": round(statistics.fmean(r["dice_original"] for r in rows), 4),
        "mean_dice_reoriented": round(statistics.fmean(r["dice_reoriented"] for r in rows), 4),
        "mean_dice_dicom": round(statistics.fmean(r["dice_dicom"] for r in rows), 4),
        "max_per_case_dice_difference": round(max(diffs), 5),
        "min_agreement_reoriented": round(min(r["agreement_reoriented"] for r in rows), 5),
        "min_agreement_dicom": round(min(r["agreement_dicom"] for r in rows), 5),
        "per_case": rows,
    }


def held_out(metrics: dict) -> dict:
    return {
        "test_dice_mean": metrics["dice"],
        "test_dice_per_class": metrics["dice_per_class"],
        "test_hd95": metrics["hd95"],
        "test_asd": metrics["asd"],
        "test_nsd": metrics["nsd"],
        "nsd_tolerance_mm": metrics["nsd_tolerance_mm"],
        "keep_largest_component": metrics["keep_largest_component"],
    }


def checks(args: argparse.Namespace, run_dir: Path, dataset: Path) -> dict[str, Any]:
    return {
        "prediction": time_prediction(run_dir, dataset, args.timing_cases),
        "orientation": orientation_check(run_dir, dataset, args.orientation_cases),
    }


def reevaluate(args: argparse.Namespace) -> int:
    """Evaluate, time and check again the run trained in ``args.work``; the training figures are kept."""
    out = args.out or ROOT / "results" / "segmentation.json"
    result = json.loads(out.read_text()) if out.is_file() else {}
    run_dir, eval_dir = args.work / "run", args.work / "eval"
    if not (run_dir / "bundle").is_dir():
        sys.exit(f"{run_dir}: no trained run (run the benchmark first)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    shutil.rmtree(eval_dir, ignore_errors=True)
    run([medlens, "-q", "evaluate", str(run_dir), "--out", str(eval_dir), "--bootstrap", str(args.bootstrap)])
    result.update(held_out(json.loads((eval_dir / "metrics.json").read_text())))
    result.update(checks(args, run_dir, args.work / "dataset"))
    result["reevaluate_command"] = " ".join([Path(sys.executable).name, *sys.argv])
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "orientation"}, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="45m", help="training budget (e.g. 45m, 10m)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "segmentation")
    parser.add_argument("--out", type=Path, default=None, help="results file (default by budget)")
    parser.add_argument("--timing-cases", type=int, default=N_TEST)
    parser.add_argument("--orientation-cases", type=int, default=N_TEST)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--reevaluate", action="store_true", help="evaluate, time and check again the run already trained in --work"
    )
    args = parser.parse_args()
    if args.reevaluate:
        return reevaluate(args)
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    from medlens.cli.model_commands import parse_duration

    minutes = parse_duration(args.budget)
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    dataset, run_dir, eval_dir = work / "dataset", work / "run", work / "eval"
    run([medlens, "-q", "import", "msd", str(Path(data) / "Task04_Hippocampus"), "--out", str(dataset),
         "--test-fraction", str(N_TEST / N_CASES), "--val-fraction", str(N_VAL / N_CASES), "--seed", "0"])  # fmt: skip
    run([medlens, "-q", "plan", str(dataset)])
    train_wall = run([medlens, "-q", "train", str(dataset), "--out", str(run_dir), "--budget", args.budget])
    run([medlens, "-q", "evaluate", str(run_dir), "--out", str(eval_dir), "--bootstrap", str(args.bootstrap)])
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "train_summary.json").read_text())
    result = {
        "benchmark": "segmentation_hippocampus",
        "short_budget_check": minutes < 45,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "split": split_sizes(dataset),
        "budget_minutes": minutes,
        "train_wall_seconds": round(train_wall, 1),
        "train_seconds": summary["train_seconds_per_member"],
        "epochs": [s["epochs"] for s in summary["member_summaries"]],
        "val_dice": summary["val_monitor_mean"],
        **held_out(metrics),
        **checks(args, run_dir, dataset),
        "target": TARGET,
    }
    out = args.out or ROOT / "results" / ("segmentation_short.json" if minutes < 45 else "segmentation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "orientation"}, indent=2))
    print(json.dumps({k: v for k, v in result["orientation"].items() if k != "per_case"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
