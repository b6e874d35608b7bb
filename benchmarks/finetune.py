"""Fine-tuning modes from few labels: PneumoniaMNIST with a stratified share of the training labels, trained in
each mode (full, linear, partial, lora) from the same starting weights; test AUC with its interval, trainable
parameters and seconds.

The starting weights are a SimCLR encoder pretrained (``medlens pretrain``) on all the training images without
their labels, with the network the labelled subset's plan gives (the pretraining dataset is planned with that
network, so the encoder's tensors match it by name and shape). ``medlens pretrain`` lives on the ``pretrain``
branch; ``--pretrain-src`` points at a checkout of it (its ``src`` folder) until it is merged. Every mode gets the
same short training budget; the pretraining time is stated apart.

    flock /work/bench.lock .venv/bin/python benchmarks/finetune.py --pretrain-src /work/wt-pretrain/src
    .venv/bin/python benchmarks/finetune.py --fraction 0.1 --budget 1 --pretrain-budget 2m
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

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent
MODES = ("full", "linear", "partial", "lora")


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of ``labels`` (at least one per class), sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        keep.append(rng.choice(idx, size=max(1, round(fraction * len(idx))), replace=False))
    return np.sort(np.concatenate(keep))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the training labels kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and of training")
    parser.add_argument("--budget", type=float, default=1.0, help="training minutes per mode")
    parser.add_argument("--pretrain-budget", default="2m", help="medlens pretrain --budget")
    parser.add_argument("--pretrain-src", type=Path, default=Path("/work/wt-pretrain/src"))
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "finetune")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "finetune.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    arrays = dict(np.load(Path(data) / "medmnist" / "pneumoniamnist.npz"))
    keep = stratified_subset(arrays["train_labels"].ravel(), args.fraction, args.seed)
    few = {**arrays, "train_images": arrays["train_images"][keep], "train_labels": arrays["train_labels"][keep]}
    (work / "few").mkdir()
    np.savez_compressed(work / "few" / "pneumoniamnist.npz", **few)
    run([medlens, "-q", "import", "medmnist", str(work / "few" / "pneumoniamnist.npz"), "--out", str(work / "ds")])
    run([medlens, "-q", "plan", str(work / "ds")])
    run([medlens, "-q", "import", "medmnist", str(Path(data) / "medmnist" / "pneumoniamnist.npz"),
         "--out", str(work / "all")])  # fmt: skip
    plan_model = yaml.safe_load((work / "ds" / "plan.yaml").read_text())["model"]
    env = {**os.environ, "PYTHONPATH": str(args.pretrain_src)}
    same = [x for k, v in plan_model["kwargs"].items() for x in ("--set", f"model.kwargs.{k}={json.dumps(v)}")]
    run([medlens, "-q", "plan", str(work / "all"), "--set", f"model.name={plan_model['name']}", *same], env=env)
    start = time.monotonic()
    run([medlens, "-q", "pretrain", str(work / "all"), "--out", str(work / "pre"), "--method", "simclr",
         "--budget", args.pretrain_budget, "--seed", str(args.seed)], env=env)  # fmt: skip
    pretrain_seconds = time.monotonic() - start
    init = work / "pre" / "encoder.safetensors"

    rows = {}
    for mode in MODES:
        run_dir = work / f"run_{mode}"
        start = time.monotonic()
        run([medlens, "-q", "train", str(work / "ds"), "--out", str(run_dir),
             "--set", f"model.pretrained={init}", "--set", f"train.finetune={mode}",
             "--set", f"train.budget_minutes={args.budget}", "--set", f"train.seed={args.seed}",
             "--set", "train.explain_images=0"])  # fmt: skip
        wall = time.monotonic() - start
        run([medlens, "-q", "evaluate", str(run_dir), "--split", "test", "--out", str(work / f"eval_{mode}")])
        metrics = json.loads((work / f"eval_{mode}" / "metrics.json").read_text())
        summary = json.loads((run_dir / "train_summary.json").read_text())
        tuning = summary["finetune"]
        rows[mode] = {
            "test_auc": metrics["auc"],
            "test_accuracy": metrics["accuracy"],
            "val_auc": summary["val_monitor_mean"],
            "trainable_parameters": tuning["trainable_parameters"],
            "total_parameters": tuning["total_parameters"],
            "finetune": tuning,
            "train_seconds": summary["train_seconds_per_member"][0],
            "epochs": summary["member_summaries"][0]["epochs"],
            "train_wall_seconds": round(wall, 1),
        }
    result = {
        "dataset": "pneumoniamnist",
        "label_fraction": args.fraction,
        "labelled_train_images": len(keep),
        "seed": args.seed,
        "budget_minutes_per_mode": args.budget,
        "init": {
            "method": "simclr (medlens pretrain, pretrain branch)",
            "images": len(arrays["train_images"]),
            "budget": args.pretrain_budget,
            "wall_seconds": round(pretrain_seconds, 1),
        },
        "model": plan_model,
        "modes": rows,
        "machine": f"{platform.node()} {os.cpu_count()} cores; other helpers' work ran at the same time",
        "command": f"flock /work/bench.lock .venv/bin/python benchmarks/finetune.py --fraction {args.fraction} "
        f"--budget {args.budget} --pretrain-budget {args.pretrain_budget} --pretrain-src {args.pretrain_src}",
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| mode | test AUC [95% CI] | trainable / total parameters | train s |")
    print("|---|---|---|---|")
    for mode, row in rows.items():
        auc = row["test_auc"]
        ci = f" [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]" if auc.get("ci95") else ""
        print(f"| {mode} | {auc['value']:.3f}{ci} | {row['trainable_parameters']:,} / {row['total_parameters']:,} "
              f"| {row['train_seconds']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
