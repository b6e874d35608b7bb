"""Differential privacy benchmark (issue 14): DP-SGD on PneumoniaMNIST at several epsilons and without privacy.

Runs the real command line (import, plan, train with ``--set train.privacy.epsilon=E``, evaluate on the test split)
with one small network and a fixed number of epochs for every row, so the rows differ only in privacy; writes
benchmarks/results/privacy.json and prints Markdown rows for BENCHMARKS.md.

    .venv/bin/python benchmarks/privacy.py                                   # epsilon 1, 4, 8 and none, 1 seed
    .venv/bin/python benchmarks/privacy.py --epsilons 8 --seeds 3 --epochs 2
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
TARGET = "AUC >= 0.90 at epsilon 8"


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", nargs="+", default=["1", "4", "8", "none"], help="'none' = no privacy")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "privacy")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "privacy.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    shutil.rmtree(args.work, ignore_errors=True)
    dataset = args.work / "dataset"
    run([medlens, "-q", "import", "medmnist", str(Path(data) / "medmnist/pneumoniamnist.npz"), "--out", str(dataset)])
    run([medlens, "-q", "plan", str(dataset)])
    common = [
        "--set", f"train.max_epochs={args.epochs}",
        "--set", "train.budget_minutes=null",  # every row trains the same epochs; DP noise is calibrated to them
        "--set", f"train.batch_size={args.batch_size}",
        "--set", "train.explain_images=0",
        "--set", "model.name=monai_resnet10",  # small: per-image gradients cost several times a normal step
        "--set", "model.kwargs={widen_factor: 0.125, stem_stride: 2, stem_pool: false}",
    ]  # fmt: skip
    rows = []
    for eps in args.epsilons:
        run_dir = args.work / f"run_eps_{eps}"
        privacy = [] if eps == "none" else ["--set", f"train.privacy.epsilon={eps}"]
        start = time.monotonic()
        run(
            [medlens, "-q", "train", str(dataset), "--out", str(run_dir), "--seeds", str(args.seeds), *common, *privacy]
        )
        wall = time.monotonic() - start
        run([medlens, "-q", "evaluate", str(run_dir), "--split", "test", "--out", str(args.work / f"eval_eps_{eps}")])
        metrics = json.loads((args.work / f"eval_eps_{eps}" / "metrics.json").read_text())
        summary = json.loads((run_dir / "train_summary.json").read_text())
        seeds = metrics.get("seeds") or {}
        rows.append(
            {
                "epsilon_requested": None if eps == "none" else float(eps),
                "privacy": summary.get("privacy"),
                "test_auc": metrics["auc"],
                "test_auc_per_seed": [s.get("auc") for s in seeds.get("per_seed", [])],
                "test_auc_seed_mean": (seeds.get("auc") or {}).get("mean"),
                "test_auc_seed_sd": (seeds.get("auc") or {}).get("sd"),
                "test_accuracy": metrics.get("accuracy"),
                "train_seconds_per_member": summary["train_seconds_per_member"],
                "train_wall_seconds": round(wall, 1),
            }
        )
    result = {
        "dataset": "pneumoniamnist (full: 4708 train, 524 val, 624 test)",
        "seeds": args.seeds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "model": "monai_resnet10 widen 0.125, stem stride 2 (GroupNorm when private)",
        "rows": rows,
        "target": TARGET,
        "machine": f"{platform.node()} {os.cpu_count()} cores (what else ran: BENCHMARKS.md)",
        "command": f".venv/bin/python benchmarks/privacy.py --epsilons {' '.join(args.epsilons)} --seeds {args.seeds} "
        f"--epochs {args.epochs} --batch-size {args.batch_size}",
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| epsilon requested | epsilon spent (delta) | test AUC [95% CI] | train s/member |")
    print("|---|---|---|---|")
    for row in rows:
        p = row["privacy"]
        spent = f"{p['epsilon_spent']:.2f} ({p['delta']:.1g})" if p else "-"
        auc = row["test_auc"]
        print(
            f"| {row['epsilon_requested'] or 'no privacy'} | {spent} | {auc['value']:.3f} "
            f"[{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}] | {row['train_seconds_per_member']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
