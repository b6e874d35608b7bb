"""Segmentation benchmark: MSD Task04 Hippocampus, fixed seeded split, default plan.

Runs the real command line (import msd, plan, train, evaluate) on MEDLENS_DATA/Task04_Hippocampus with a
seeded split of about 162 training, 18 validation and 40 held-out cases, then times prediction on the
held-out cases three ways: end to end (read, preprocess, sliding window, resample, write NIfTI), the
network's own forward passes inside that sliding window, and MONAI's ``sliding_window_inference`` called
directly on the preprocessed tensor with the same network and settings. Writes
benchmarks/results/segmentation.json (``segmentation_short.json`` when the budget is under 45 minutes).

    .venv/bin/python benchmarks/segmentation.py                  # the full 45-minute budget
    .venv/bin/python benchmarks/segmentation.py --budget 3m      # a short end-to-end check
    .venv/bin/python benchmarks/segmentation.py --reevaluate     # evaluate and time the trained run again
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

from common import split_sizes

ROOT = Path(__file__).resolve().parent
N_CASES, N_TEST, N_VAL = 220, 40, 18
TARGET = "mean foreground Dice >= 0.87 within 45 min of training; prediction at least as fast as MONAI's sliding window"


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def time_prediction(run_dir: Path, dataset_dir: Path, n_cases: int) -> dict[str, float]:
    """Seconds per case: end to end, network forward passes alone, and MONAI's sliding window baseline."""
    import torch
    from monai.inferers import sliding_window_inference

    from medlens import load_bundle
    from medlens.data.dataset import load_dataset
    from medlens.io import read_image, write_image
    from medlens.tasks.segmentation.preprocessing import prepare_image

    bundle = load_bundle(run_dir)
    plan, seg = bundle.plan, getattr(bundle.plan, "segmentation", None)
    if seg is None:
        raise SystemExit(f"{run_dir}: not a segmentation bundle")
    net = bundle.networks()[0]
    forward_seconds = [0.0]

    def timed(module: torch.nn.Module, args: object, output: object) -> None:
        forward_seconds[0] += time.perf_counter() - timed.start  # type: ignore[attr-defined]

    def start(module: torch.nn.Module, args: object) -> None:
        timed.start = time.perf_counter()  # type: ignore[attr-defined]

    net.register_forward_pre_hook(start)
    net.register_forward_hook(timed)
    cases = load_dataset(dataset_dir).split("test")[:n_cases]
    end_to_end, forward, baseline = [], [], []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for case in cases:
            path = Path(case.image[0])
            forward_seconds[0] = 0.0
            t0 = time.perf_counter()
            image = read_image(path)
            prediction = bundle.predict(image)
            write_image(prediction.labels, Path(tmp) / "mask.nii.gz")  # type: ignore[attr-defined]
            end_to_end.append(time.perf_counter() - t0)
            forward.append(forward_seconds[0])
            x = prepare_image(image, plan).tensor[None]  # type: ignore[arg-type]
            t1 = time.perf_counter()
            sliding_window_inference(
                x, plan.data.input_size, seg.sw_batch_size, net, overlap=seg.sw_overlap, mode=seg.sw_mode
            )
            baseline.append(time.perf_counter() - t1)
    e2e, fwd, base = statistics.fmean(end_to_end), statistics.fmean(forward), statistics.fmean(baseline)
    return {
        "cases_timed": len(cases),
        "end_to_end_seconds_per_case": round(e2e, 4),
        "network_forward_seconds_per_case": round(fwd, 4),
        "monai_sliding_window_seconds_per_case": round(base, 4),
        "end_to_end_over_forward": round(e2e / fwd, 3) if fwd else None,
        "end_to_end_over_monai_sliding_window": round(e2e / base, 3) if base else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def reevaluate(args: argparse.Namespace) -> int:
    """Evaluate and time prediction again on the run trained in ``args.work`` (after a predictor change);
    the training figures are kept, the held-out metrics and timing are replaced."""
    out = ROOT / "results" / "segmentation.json"
    result = json.loads(out.read_text())
    run_dir, eval_dir = args.work / "run", args.work / "eval"
    if not (run_dir / "bundle").is_dir():
        sys.exit(f"{run_dir}: no trained run (run the benchmark first)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    evaluate = [medlens, "-q", "evaluate", str(run_dir), "--out", str(eval_dir), "--bootstrap", str(args.bootstrap)]
    run([*evaluate, "--overwrite"])  # replaces the evaluation this benchmark wrote before
    result.update(held_out(json.loads((eval_dir / "metrics.json").read_text())))
    result["prediction"] = time_prediction(run_dir, args.work / "dataset", args.timing_cases)
    result["reevaluate_command"] = " ".join([Path(sys.executable).name, *sys.argv])
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def held_out(metrics: dict) -> dict:
    return {
        "test_dice_mean": metrics["dice"],
        "test_dice_per_class": metrics["dice_per_class"],
        "test_hd95": metrics["hd95"],
        "test_asd": metrics["asd"],
        "test_nsd": metrics["nsd"],
        "keep_largest_component": metrics["keep_largest_component"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="45m", help="training budget (e.g. 45m, 3m)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "segmentation")
    parser.add_argument("--timing-cases", type=int, default=N_TEST)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--reevaluate",
        action="store_true",
        help="evaluate and time again the run already trained in --work; update results/segmentation.json",
    )
    args = parser.parse_args()
    if args.reevaluate:
        return reevaluate(args)
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    sys.path.insert(0, str(ROOT.parent / "src"))
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
    timing = time_prediction(run_dir, dataset, args.timing_cases)
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
        "prediction": timing,
        "target": TARGET,
    }
    out = ROOT / "results" / ("segmentation_short.json" if minutes < 45 else "segmentation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
