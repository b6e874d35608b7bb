"""Calibration and uncertainty benchmark: MedMNIST sets with the default plan and budget, N seeds, on the test set.

Runs the real command line (import, plan, train --seeds N, evaluate) and reports what issue 10 asks to show:
ECE before and after temperature scaling (with intervals), AURC, the referral threshold chosen on validation with
the share referred on test and the accuracy of the rest, and the conformal coverage and mean set size at the
bundle's level (90%; target: coverage within 0.03 of 0.90). Writes benchmarks/results/calibration_<set>.json and
prints a Markdown row for BENCHMARKS.md.

    .venv/bin/python benchmarks/calibration.py --sets pneumoniamnist --seeds 3
    .venv/bin/python benchmarks/calibration.py --sets adrenalmnist3d --seeds 3
    .venv/bin/python benchmarks/calibration.py --sets pneumoniamnist --reuse   # evaluate an existing run again
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
from typing import Any

ROOT = Path(__file__).resolve().parent
SETS = {
    "pneumoniamnist": "medmnist/pneumoniamnist.npz",
    "adrenalmnist3d": "medmnist/adrenalmnist3d.npz",
}
TARGET = "conformal coverage within 0.03 of 0.90 on test"


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    return round(time.monotonic() - start, 1)


def _ci(entry: dict[str, Any], digits: int = 3) -> str:
    lo, hi = entry.get("ci95") or [None, None]
    value = entry.get("value")
    if value is None:
        return "n/a"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "calibration")
    parser.add_argument("--reuse", action="store_true", help="keep an existing trained run; evaluate it again")
    parser.add_argument("--note", default="", help="what else ran on the machine (recorded in the results)")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    rows = []
    for name in args.sets:
        work = args.work / name
        load_before = os.getloadavg()
        train_seconds = None
        if not (args.reuse and (work / "run" / "bundle" / "bundle.yaml").is_file()):
            shutil.rmtree(work, ignore_errors=True)
            run([medlens, "-q", "import", "medmnist", str(Path(data) / SETS[name]), "--out", str(work / "dataset")])
            run([medlens, "-q", "plan", str(work / "dataset")])
            train_seconds = run(
                [medlens, "-q", "train", str(work / "dataset"), "--out", str(work / "run"), "--seeds", str(args.seeds)]
            )
        shutil.rmtree(work / "eval", ignore_errors=True)
        eval_seconds = run(
            [medlens, "-q", "evaluate", str(work / "run"), "--split", "test", "--out", str(work / "eval")]
        )
        load_after = os.getloadavg()
        m = json.loads((work / "eval" / "metrics.json").read_text())
        summary = json.loads((work / "run" / "train_summary.json").read_text())
        referral = m["referral"]
        coverage = m["conformal_coverage"]["value"]
        result = {
            "dataset": name,
            "seeds": len(summary["members"]),
            "n_test": m["n_cases"],
            "temperature": m["temperature"],
            "ece_uncalibrated": m["ece_uncalibrated"],
            "ece": m["ece"],
            "aurc": m["aurc"],
            "referral_threshold": referral["threshold"],
            "referral_target_accuracy": referral["target_accuracy"],
            "referred_share": referral["referred_share"],
            "n_referred": referral["n_referred"],
            "accuracy_of_rest": referral["accuracy_of_rest"],
            "accuracy_of_referred": referral["accuracy_of_referred"],
            "accuracy_all": m["accuracy"],
            "auc": m["auc"],
            "conformal_level": m["conformal_level"],
            "conformal_coverage": m["conformal_coverage"],
            "conformal_set_size": m["conformal_set_size"],
            "conformal_set_sizes": m["conformal_set_sizes"],
            "target": TARGET,
            "target_met": coverage is not None and abs(coverage - m["conformal_level"]) <= 0.03,
            "validation": summary.get("calibration_on_validation"),
            "train_seconds_per_seed": summary["train_seconds_per_member"],
            "train_wall_seconds": train_seconds,
            "evaluate_seconds": eval_seconds,
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "note": args.note,
            "machine": f"{platform.node()} {os.cpu_count()} cores",
            "command": f".venv/bin/python benchmarks/calibration.py --sets {name} --seeds {args.seeds}",
        }
        out = ROOT / "results" / f"calibration_{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        rows.append(
            f"| {name} | {result['seeds']} | {m['temperature']:.3f} | {_ci(m['ece_uncalibrated'])} | {_ci(m['ece'])} "
            f"| {_ci(m['aurc'], 4)} | {referral['threshold']:.3f} | {_ci(referral['referred_share'])} "
            f"| {_ci(referral['accuracy_of_rest'])} (all: {m['accuracy']['value']:.3f}) "
            f"| {_ci(m['conformal_coverage'])} | {_ci(m['conformal_set_size'], 2)} |"
        )
    print(
        "\n| dataset | seeds | T | ECE before | ECE after | AURC | referral threshold | referred on test "
        "| accuracy of the rest | conformal coverage (90%) | mean set size |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
