"""DDP benchmark (issue 14 part 1): PneumoniaMNIST trained in 2 processes (DDP, gloo on CPU) against 1 process,
with the same wall-clock budget and the same global batch (``train.batch_rule: global``).

Each row runs the real command line (``medlens train --devices P --budget B``, then ``medlens evaluate`` on the
test split) and records the test AUC with its bootstrap interval and the training images per second of one process
(the loop's own throughput, data loading included). Both rows use the same cores: 1 process with
``--threads-per-process`` x 2 threads, 2 processes with that many each. On a 2-core machine the total cannot grow,
so the per-process ratio shows what DDP itself costs (gradient all-reduce over gloo, the budget's agreement).

    .venv/bin/python benchmarks/ddp.py prepare                         # import + plan (no lock needed)
    flock /work/bench.lock .venv/bin/python benchmarks/ddp.py run --processes 1 --budget 3m
    flock /work/bench.lock .venv/bin/python benchmarks/ddp.py run --processes 2 --budget 3m
    .venv/bin/python benchmarks/ddp.py report                          # benchmarks/results/ddp.json + table rows
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
WORK = ROOT / "work" / "ddp"
OUT = ROOT / "results" / "ddp.json"


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def medlens() -> str:
    return str(Path(sys.executable).with_name("medlens"))


def prepare() -> None:
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    shutil.rmtree(WORK, ignore_errors=True)
    dataset = WORK / "dataset"
    run([medlens(), "-q", "import", "medmnist", str(Path(data) / "medmnist/pneumoniamnist.npz"), "--out", str(dataset)])
    run([medlens(), "-q", "plan", str(dataset)])


def train_row(processes: int, budget: str, threads: int) -> None:
    dataset, run_dir, eval_dir = WORK / "dataset", WORK / f"run_p{processes}", WORK / f"eval_p{processes}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads * (2 if processes == 1 else 1))}
    start = time.monotonic()
    run(
        [medlens(), "-q", "train", str(dataset), "--out", str(run_dir), "--overwrite", "--devices", str(processes),
         "--budget", budget, "--set", "train.explain_images=0"],
        env,
    )  # fmt: skip
    wall = time.monotonic() - start
    run([medlens(), "-q", "evaluate", str(run_dir), "--split", "test", "--overwrite", "--out", str(eval_dir)], env)
    member = json.loads((run_dir / "seed_0" / "summary.json").read_text())
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    row = {
        "processes": processes,
        "threads_per_process": int(env["OMP_NUM_THREADS"]),
        "budget": budget,
        "test_auc": metrics["auc"],
        "test_accuracy": metrics.get("accuracy"),
        "best_val_auc": member["best_val_auc"],
        "epochs": member["epochs"],
        "steps": member["steps"],
        "global_batch": member["batch_size"],
        "train_seconds": member["train_seconds"],
        "images_per_second_per_process": member["train_images_per_second"],
        "stopped_by": member["stopped_by"],
        "train_wall_seconds": round(wall, 1),
        "load_average_after": os.getloadavg(),
        "command": f"flock /work/bench.lock .venv/bin/python benchmarks/ddp.py run --processes {processes} "
        f"--budget {budget} --threads-per-process {threads}",
    }
    (WORK / f"row_p{processes}.json").write_text(json.dumps(row, indent=2))
    print(json.dumps(row, indent=2))


def report() -> None:
    rows = {p: json.loads((WORK / f"row_p{p}.json").read_text()) for p in (1, 2)}
    one, two = rows[1], rows[2]
    ratio = two["images_per_second_per_process"] / one["images_per_second_per_process"]
    result = {
        "dataset": "pneumoniamnist (full: 4708 train, 524 val, 624 test), default plan",
        "rule": "train.batch_rule=global: the same global batch and lr in both rows; each of 2 processes takes half",
        "rows": [one, two],
        "images_per_second_per_process_ratio_2_over_1": round(ratio, 3),
        "total_images_per_second_ratio_2_over_1": round(2 * ratio, 3),
        "machine": f"{platform.node()} {os.cpu_count()} cores, shared with other helpers' work",
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print("\n| processes x threads | budget | epochs (steps) | test AUC [95% CI] | images/s per process | command |")
    print("|---|---|---|---|---|---|")
    for row in (one, two):
        auc = row["test_auc"]
        print(
            f"| {row['processes']} x {row['threads_per_process']} | {row['budget']} | {row['epochs']} ({row['steps']}) "
            f"| {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}] "
            f"| {row['images_per_second_per_process']:.0f} | `{row['command']}` |"
        )
    print(f"\nper-process throughput, 2 processes / 1 process: {ratio:.2f} (total: {2 * ratio:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("prepare")
    one = sub.add_parser("run")
    one.add_argument("--processes", type=int, choices=[1, 2], required=True)
    one.add_argument("--budget", default="3m")
    one.add_argument("--threads-per-process", type=int, default=1, help="1 process gets twice this many")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare()
    elif args.step == "run":
        train_row(args.processes, args.budget, args.threads_per_process)
    else:
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
