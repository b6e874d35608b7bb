"""Detection benchmark: BCCD (Pascal VOC) train -> val with the default plan, no pretrained weights.

Runs the real command line (import voc, plan, train, evaluate), then measures inference throughput of the
trained bundle with PyTorch and, after ``medlens export``, with ONNX Runtime. BCCD's ``val`` list is held out
for the final figure only: training sees BCCD ``train``, 15% of which (seeded) is the validation split that
picks the checkpoint and the thresholds. Writes benchmarks/results/detection.json (full budget) or
benchmarks/results/detection_budget_<N>m.json (a shorter --budget: a check that the pipeline runs end to end,
not the benchmark's figure).

    .venv/bin/python benchmarks/detection.py                # the plan's budget (45 min on CPU)
    .venv/bin/python benchmarks/detection.py --budget 3m    # short-budget check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import split_sizes

ROOT = Path(__file__).resolve().parent
TARGET = "mAP@.5 >= 0.85 within 45 minutes of training (YOLOv8n, COCO-pretrained: about 0.88-0.94)"


def run(cmd: list[str], threads: int) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def throughput(run_dir: Path, dataset_dir: Path, work: Path, n_images: int, threads: int) -> dict[str, object]:
    """Images per second on held-out images, batch 1, after a warm-up: the bundle in PyTorch (all members, NMS
    included) and its ``medlens export`` graph in ONNX Runtime, timed in the same run on the same images."""
    import onnxruntime as ort
    import torch

    from medlens import load_bundle
    from medlens.data.dataset import load_dataset
    from medlens.io import read_image
    from medlens.tasks.detection.prediction import image_tensor
    from medlens.workflows.exporting import export_onnx

    torch.set_num_threads(threads)
    bundle = load_bundle(run_dir)
    data = load_dataset(dataset_dir)
    paths = [data.image_paths(c)[0] for c in data.split("test")[:n_images]]
    pictures = [read_image(p) for p in paths]  # read once: the timing is of prediction, not of JPEG decoding
    images = [image_tensor(p.as_2d().array, bundle.plan.data.channels, str(p)).float() for p in pictures]
    for picture in pictures[:2]:
        bundle.predict(picture)  # warm-up
    start = time.perf_counter()
    for picture in pictures:
        bundle.predict(picture)
    torch_seconds = time.perf_counter() - start
    export_onnx(run_dir, work / "onnx", overwrite=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(work / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feeds = [{"image": image.numpy()} for image in images]
    session.run(None, feeds[0])  # warm-up
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    onnx_seconds = time.perf_counter() - start
    n = len(images)
    return {"images": n, "image_size": list(images[0].shape[1:]), "threads": threads,
            "pytorch_images_per_second": round(n / torch_seconds, 2),
            "onnxruntime_images_per_second": round(n / onnx_seconds, 2),
            "onnxruntime_over_pytorch": round(torch_seconds / onnx_seconds, 3)}  # fmt: skip


def hold_out_voc_val(dataset_dir: Path, val_fraction: float) -> None:
    """Keep BCCD's ``val`` list unseen until the final evaluation: it becomes the ``test`` split, and a seeded
    ``val_fraction`` of the ``train`` list becomes the validation split that picks the checkpoint, stops early
    and chooses the NMS and score thresholds. Reporting on the images that made those choices would flatter
    the figure."""
    from medlens.data.dataset import load_dataset, write_dataset
    from medlens.data.splits import assign_splits

    data = load_dataset(dataset_dir)
    for case in data.cases:
        case.split = {"val": "test", "train": ""}.get(case.split, case.split)
    assign_splits(data.cases, val_fraction=val_fraction, test_fraction=0.0, seed=0)
    write_dataset(data.root, data.spec, data.cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default=None, help="training budget, e.g. 3m (default: the plan's)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--throughput-images", type=int, default=40)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for training and inference (default: every core; use 1 when another job holds a "
        "core of a 2-core machine: 2 threads on one free core thrash, about 10x slower here)",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "detection")
    parser.add_argument(
        "--val-fraction", type=float, default=0.15, help="share of BCCD train used for validation (model choice)"
    )
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    run([medlens, "-q", "import", "voc", str(Path(data) / "BCCD"), "--out", str(work / "dataset")], args.threads)
    hold_out_voc_val(work / "dataset", args.val_fraction)
    run([medlens, "-q", "plan", str(work / "dataset")], args.threads)
    train = [medlens, "-q", "train", str(work / "dataset"), "--out", str(work / "run"), "--seeds", str(args.seeds)]
    if args.budget:
        train += ["--budget", args.budget]
    start = time.monotonic()
    run(train, args.threads)
    wall = time.monotonic() - start
    evaluate = [medlens, "-q", "evaluate", str(work / "run"), "--split", "test", "--out", str(work / "eval")]
    run([*evaluate, "--bootstrap", str(args.bootstrap)], args.threads)
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    summary = json.loads((work / "run" / "train_summary.json").read_text())
    plan = yaml.safe_load((work / "run" / "plan.yaml").read_text())
    result = {
        "benchmark": "BCCD detection, train -> val, default plan, from scratch",
        "protocol": "BCCD val held out (never used for a choice); validation split carved from BCCD train",
        "split": split_sizes(work / "dataset"),
        "kind": "full" if not args.budget else f"short-budget check ({args.budget}), not the benchmark figure",
        "target": TARGET,
        "map50": metrics["map50"],
        "map": metrics["map"],
        "map75": metrics["map75"],
        "mar100": metrics["mar100"],
        "ap50_per_class": metrics["ap50_per_class"],
        "ap_per_class": metrics["ap_per_class"],
        "operating_point": metrics["operating_point"],
        "train_seconds_per_seed": summary["train_seconds_per_member"],
        "epochs_per_seed": [s["epochs"] for s in summary["member_summaries"]],
        "train_images_per_second": [s["train_images_per_second"] for s in summary["member_summaries"]],
        "train_wall_seconds": round(wall, 1),
        "inference": throughput(work / "run", work / "dataset", work, args.throughput_images, args.threads),
        "torch_threads": args.threads,
        "plan": {
            "model": plan["model"]["name"],
            "input_size": plan["data"]["input_size"],
            "batch_size": plan["train"]["batch_size"],
            "budget_minutes": plan["train"]["budget_minutes"],
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    name = "detection.json" if not args.budget else f"detection_budget_{args.budget}.json"
    out = ROOT / "results" / name
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("kind", "map50", "map", "train_seconds_per_seed")}, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
