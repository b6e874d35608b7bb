"""Classification quality benchmark: MedMNIST sets with the default plan, N seeds, test AUC/ACC and time.

Runs the real command line (import, plan, train --seeds N, evaluate) on the archives in MEDLENS_DATA and
writes benchmarks/results/classification_<name>.json plus a Markdown row for BENCHMARKS.md.

    .venv/bin/python benchmarks/classification.py                       # all three sets, 3 seeds
    .venv/bin/python benchmarks/classification.py --sets pneumoniamnist --seeds 1
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

ROOT = Path(__file__).resolve().parent
SETS = {
    "pneumoniamnist": ("medmnist/pneumoniamnist.npz", "AUC >= 0.96, ACC >= 0.88"),
    "adrenalmnist3d": ("medmnist/adrenalmnist3d.npz", "AUC >= 0.86, ACC >= 0.80"),
    "adrenalmnist3d_64": ("medmnist/adrenalmnist3d_64.npz", "AUC >= 0.86, ACC >= 0.80"),
}


CALIBRATION_KEYS = ("ece", "ece_uncalibrated", "aurc", "conformal_level", "conformal_coverage", "conformal_set_size")


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "work")
    parser.add_argument("--out", type=Path, help="results JSON of one set (default: results/classification_SET.json)")
    args = parser.parse_args()
    if args.out and len(args.sets) > 1:
        parser.error("--out names one results file: give one set")
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    rows = []
    for name in args.sets:
        archive, target = SETS[name]
        work = args.work / name
        shutil.rmtree(work, ignore_errors=True)
        run([medlens, "-q", "import", "medmnist", str(Path(data) / archive), "--out", str(work / "dataset")])
        run([medlens, "-q", "plan", str(work / "dataset")])
        start = time.monotonic()
        run(
            [
                medlens,
                "-q",
                "train",
                str(work / "dataset"),
                "--out",
                str(work / "run"),
                "--seeds",
                str(args.seeds),
            ]
        )
        wall = time.monotonic() - start
        run([medlens, "-q", "evaluate", str(work / "run"), "--split", "test", "--out", str(work / "eval")])
        metrics = json.loads((work / "eval" / "metrics.json").read_text())
        summary = json.loads((work / "run" / "train_summary.json").read_text())
        seeds = metrics["seeds"]
        result = {
            "dataset": name,
            "seeds": args.seeds,
            "test_auc_mean": seeds["auc"]["mean"],
            "test_auc_sd": seeds["auc"]["sd"],
            "test_acc_at_0.5_mean": seeds["accuracy_at_0.5"]["mean"],
            "test_acc_at_0.5_sd": seeds["accuracy_at_0.5"]["sd"],
            "test_acc_operating_mean": seeds["accuracy"]["mean"],
            "test_acc_operating_sd": seeds["accuracy"]["sd"],
            "ensemble_auc": metrics["auc"],
            "ensemble_accuracy": metrics["accuracy"],
            "calibration": {k: metrics[k] for k in CALIBRATION_KEYS if k in metrics},
            "train_seconds_per_seed": summary["train_seconds_per_member"],
            "train_wall_seconds_all_seeds": round(wall, 1),
            "per_seed": seeds["per_seed"],
            "plan_model": json.loads(
                json.dumps(__import__("yaml").safe_load((work / "run" / "plan.yaml").read_text())["model"])
            ),
            "target": target,
            "machine": f"{platform.node()} {os.cpu_count()} cores",
            "command": f".venv/bin/python benchmarks/classification.py --sets {name} --seeds {args.seeds}"
            + (f" --out {args.out}" if args.out else ""),
        }
        out = args.out or ROOT / "results" / f"classification_{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        per_seed_min = [round(s / 60, 1) for s in summary["train_seconds_per_member"]]
        rows.append(
            f"| {name} | {result['test_auc_mean']:.3f} ± {result['test_auc_sd']:.3f} "
            f"| {result['test_acc_at_0.5_mean']:.3f} ± {result['test_acc_at_0.5_sd']:.3f} "
            f"| {result['test_acc_operating_mean']:.3f} ± {result['test_acc_operating_sd']:.3f} "
            f"| {metrics['auc']['value']:.3f} | {per_seed_min} | {target} |"
        )
    print(
        "\n| dataset | test AUC (mean ± sd) | test ACC @0.5 | test ACC @val threshold | ensemble AUC "
        "| train min/seed | target |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
