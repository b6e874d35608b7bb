"""Synthetic-image benchmark (issue 15): a class-conditional generator of PneumoniaMNIST and what its images are
worth, through the real command line, in two phases so that each holds the benchmark lock on its own.

    flock /work/bench.lock .venv/bin/python benchmarks/synthesis.py train --model diffusion --budget 6m
    flock /work/bench.lock .venv/bin/python benchmarks/synthesis.py evaluate --budget 1.5m --n 2000 --steps 25

``train`` imports the archive (once) and runs ``medlens synth train``; ``evaluate`` runs ``medlens synth evaluate``
(four classifiers with the default plan at the given budget each: train-on-real, train-on-synthetic, 10% of the
real labels, and those plus the synthetic images) and writes benchmarks/results/synthesis.json with the timings and
the commands, and prints a Markdown row for BENCHMARKS.md. Targets: TSTR AUC >= 0.85, an augmentation gain whose
95% interval lies above 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "synthesis"
ARCHIVE = "medmnist/pneumoniamnist.npz"
MEDLENS = [sys.executable, "-m", "medlens.cli.main"]


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    return round(time.monotonic() - start, 1)


def _ci(entry: dict[str, Any]) -> str:
    value, (lo, hi) = entry.get("value"), entry.get("ci95") or (None, None)
    if value is None:
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "evaluate"])
    parser.add_argument("--model", default="diffusion", choices=["diffusion", "gan"])
    parser.add_argument("--budget", default=None, help="train: generator budget (6m); evaluate: per classifier")
    parser.add_argument("--n", type=int, default=2000, help="evaluate: synthetic images")
    parser.add_argument("--steps", type=int, default=50, help="evaluate: DDIM sampling steps")
    parser.add_argument("--out", default=str(ROOT / "results" / "synthesis.json"))
    args = parser.parse_args()
    data = Path(os.environ.get("MEDLENS_DATA", ROOT.parent.parent / "shared" / "data"))
    dataset, generator = WORK / "pneumoniamnist", WORK / f"generator_{args.model}"
    timings_file = WORK / f"timings_{args.model}.json"
    if args.phase == "train":
        WORK.mkdir(parents=True, exist_ok=True)
        if not (dataset / "dataset.yaml").is_file():
            run([*MEDLENS, "-q", "import", "medmnist", str(data / ARCHIVE), "--out", str(dataset)])
        cmd = [*MEDLENS, "synth", "train", str(dataset), "--out", str(generator), "--model", args.model,
               "--budget", args.budget or "6m", "--overwrite"]  # fmt: skip
        seconds = run(cmd)
        timings_file.write_text(json.dumps({"train_seconds": seconds, "train_command": " ".join(cmd[3:])}))
        return 0
    out_dir = WORK / f"evaluation_{args.model}"
    cmd = [*MEDLENS, "synth", "evaluate", str(generator), "--real", str(dataset), "--out", str(out_dir), "--n",
           str(args.n), "--steps", str(args.steps), "--budget", args.budget or "1.5m", "--overwrite"]  # fmt: skip
    seconds = run(cmd)
    result = json.loads((out_dir / "synthesis.json").read_text())
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    record = {
        "dataset": "pneumoniamnist (28x28; train 4708, val 524, test 624)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (what else ran: BENCHMARKS.md)",
        "generator_training": {
            "seconds": timings.get("train_seconds"),
            "command": "medlens " + timings.get("train_command", ""),
        },
        "evaluation": {"seconds": seconds, "command": "medlens " + " ".join(cmd[3:])},
        "targets": {"tstr_auc": ">= 0.85", "aug_gain_auc": "positive, 95% interval excluding 0"},
        "met": {
            "tstr_auc": (result["tstr_auc"]["value"] or 0) >= 0.85,
            "aug_gain_auc": bool(result["aug_gain_auc"]["excludes_zero"] and result["aug_gain_auc"]["value"] > 0),
        },
        "result": result,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"| {args.model} | {_ci(result['trtr_auc'])} | {_ci(result['tstr_auc'])} | {_ci(result['real_fraction_auc'])} "
        f"| {_ci(result['real_fraction_synthetic_auc'])} | {_ci(result['aug_gain_auc'])} "
        f"| {result['frechet_distance']:.3g} ({result['frechet_distance_held_out_real']:.3g}) "
        f"| {result['precision']:.3f} / {result['recall']:.3f} ({result['precision_held_out_real']:.3f} / "
        f"{result['recall_held_out_real']:.3f}) | {result['nn_distance_ratio']:.3f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
