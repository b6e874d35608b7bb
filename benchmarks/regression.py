"""Regression benchmark: the hippocampus volume (mL, from each case's label) predicted from the MRI crop.

Builds a table of the 220 labelled MSD Task04 Hippocampus cases (image path, total hippocampus volume in mL
counted from the label: voxels of both classes times the voxel volume), imports it with
``medlens import csv --target-type continuous`` (seeded split of about 162 / 18 / 40 cases, stratified by
volume quintile), plans, trains with the default plan and budget, evaluates on the 40 held-out cases (MAE,
RMSE, R², Pearson r, Bland-Altman bias and limits, 95% bootstrap intervals), exports to ONNX, and runs the
exported graph in ONNX Runtime against ``bundle.predict`` on the held-out cases. For scale, the same metrics of
the trivial predictor (the training mean for every case) on the same cases.

    .venv/bin/python benchmarks/regression.py                 # default plan and budget
    .venv/bin/python benchmarks/regression.py --budget 3m     # a short check

Writes benchmarks/results/regression.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import split_sizes

ROOT = Path(__file__).resolve().parent
N_CASES, N_TEST, N_VAL = 220, 40, 18


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def volume_table(task: Path, out: Path) -> Path:
    """``image,volume_ml`` for every labelled case of the Decathlon task."""
    import nibabel as nib
    import numpy as np

    entries = json.loads((task / "dataset.json").read_text())["training"]
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient_id", "volume_ml"])
        for entry in entries:
            label = nib.load(str(task / entry["label"]))
            voxels = int((np.asarray(label.dataobj) > 0).sum())
            volume = voxels * float(np.prod(label.header.get_zooms()[:3])) / 1000.0
            image = task / entry["image"]
            writer.writerow([str(image), image.name.split(".")[0], f"{volume:.4f}"])
    return out


def onnx_check(run_dir: Path, export_dir: Path, dataset: Path) -> dict[str, Any]:
    """ONNX Runtime on the exported graph against ``bundle.predict``, on the held-out cases."""
    import numpy as np
    import onnxruntime as ort

    import medlens
    from medlens.data.dataset import load_dataset
    from medlens.training.images import to_input

    bundle = medlens.load_bundle(run_dir)
    session = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    data = load_dataset(dataset)
    diffs = []
    for case in data.split("test"):
        image = medlens.read_image(data.image_paths(case)[0])
        want = bundle.predict(image).value  # type: ignore[attr-defined]
        x = to_input(image, bundle.plan.data)[None]
        got = float(session.run(None, {"image": x.astype(np.float32)})[0][0])
        diffs.append(abs(got - want))
    return {"cases": len(diffs), "max_abs_difference_ml": float(max(diffs))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default=None, help="training budget (default: the plan's)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "regression")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    import numpy as np

    from medlens.tasks.regression.metrics import regression_metrics

    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    table = volume_table(Path(data) / "Task04_Hippocampus", work / "volumes.csv")
    dataset, run_dir, eval_dir, export_dir = work / "dataset", work / "run", work / "eval", work / "onnx"
    run([medlens, "-q", "import", "csv", str(table), "--label-column", "volume_ml", "--target-type", "continuous",
         "--unit", "mL", "--out", str(dataset), "--test-fraction", str(N_TEST / N_CASES),
         "--val-fraction", str(N_VAL / N_CASES), "--seed", "0"])  # fmt: skip
    run([medlens, "-q", "plan", str(dataset)])
    budget = ["--budget", args.budget] if args.budget else []
    train_wall = run([medlens, "-q", "train", str(dataset), "--out", str(run_dir), *budget])
    run([medlens, "-q", "evaluate", str(run_dir), "--out", str(eval_dir), "--bootstrap", str(args.bootstrap)])
    run([medlens, "-q", "export", str(run_dir), "--out", str(export_dir)])
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "train_summary.json").read_text())
    with open(eval_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([float(r["true"]) for r in rows])
    from medlens.data.dataset import load_dataset

    train_mean = float(np.mean([float(c.target) for c in load_dataset(dataset).split("train")]))
    trivial = regression_metrics(truth, np.full_like(truth, train_mean), n_bootstrap=0, unit="mL")
    keys = ("mae", "rmse", "r2", "pearson_r", "bias", "loa_low", "loa_high")
    result = {
        "benchmark": "regression_hippocampus_volume",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "split": split_sizes(dataset),
        "train_wall_seconds": round(train_wall, 1),
        "train_seconds": summary["train_seconds_per_member"],
        "epochs": [s["epochs"] for s in summary["member_summaries"]],
        "val_mae": summary["val_monitor_mean"],
        "test": {k: metrics[k] for k in keys},
        "test_truth_range_ml": metrics["truth_range"],
        "trivial_training_mean_predictor": {k: trivial[k]["value"] for k in ("mae", "rmse", "r2")},
        "onnx_runtime_vs_bundle": onnx_check(run_dir, export_dir, dataset),
    }
    out = ROOT / "results" / "regression.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
