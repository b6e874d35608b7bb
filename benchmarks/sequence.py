"""Sequence benchmark: OASIS-2 visits, the transformer over visits against logistic regression and gradient boosting
on the last visit, on the same subject-level split.

Imports ``oasis2/oasis_longitudinal.csv`` with ``medlens import table --task sequence`` (150 subjects, 373 visits;
seeded split by subject, about 105 / 15 / 30, stratified by outcome; outcome: Group at the last visit,
Nondemented negative; CDR excluded by the leak rule), plans, trains the transformer with 3 seeds (one run each, the
plan's defaults: up to 100 epochs, early stopping on validation AUC), and evaluates each on the 30 test subjects
(AUC with a 95% bootstrap interval over subjects; the baselines are trained in each evaluation on the train split's
last visits, so they are the same in every run). Then the same with MMSE excluded too (``--exclude MMSE``): MMSE is
the cognitive test that dementia ratings lean on, so the second setting asks what the visits hold without it.

    .venv/bin/python benchmarks/sequence.py               # 2 settings x 3 seeds
    .venv/bin/python benchmarks/sequence.py --seeds 1     # a short check

Writes benchmarks/results/sequence.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import split_sizes

ROOT = Path(__file__).resolve().parent
IMPORT = ["--task", "sequence", "--subject", "Subject ID", "--order", "Visit", "--target", "Group"]


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def setting(medlens: str, table: Path, work: Path, seeds: int, bootstrap: int, exclude: list[str]) -> dict[str, Any]:
    """Import (with ``exclude``), plan, and per seed train and evaluate; the AUCs of every seed."""
    dataset = work / "dataset"
    extra = ["--exclude", ",".join(exclude)] if exclude else []
    run([medlens, "-q", "import", "table", str(table), *IMPORT, *extra, "--out", str(dataset), "--seed", "0"])
    run([medlens, "-q", "plan", str(dataset)])
    per_seed = []
    for seed in range(seeds):
        run_dir, eval_dir = work / f"run_seed{seed}", work / f"eval_seed{seed}"
        wall = run([medlens, "-q", "train", str(dataset), "--out", str(run_dir), "--set", f"train.seed={seed}"])
        run([medlens, "-q", "evaluate", str(run_dir), "--out", str(eval_dir), "--bootstrap", str(bootstrap)])
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        summary = json.loads((run_dir / "train_summary.json").read_text())
        per_seed.append({
            "seed": seed,
            "train_wall_seconds": round(wall, 1),
            "epochs": summary["member_summaries"][0]["epochs"],
            "val_auc": summary["val_monitor_mean"],
            "transformer_auc": metrics["auc"],
            "baselines": metrics["baselines"],
        })  # fmt: skip
    aucs = [s["transformer_auc"]["value"] for s in per_seed]
    fingerprint = json.loads((dataset / "fingerprint.json").read_text())["sequence"]
    first = per_seed[0]["baselines"]
    return {
        "exclude": exclude,
        "features": [f["name"] for f in fingerprint["features"]],
        "excluded": fingerprint["excluded"],
        "split_subjects": split_sizes(dataset),
        "per_seed": per_seed,
        "transformer_auc_mean": statistics.fmean(aucs),
        "transformer_auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
        **{name: {"auc": first[name]["auc"], "ci95": first[name]["ci95"]}
           for name in ("logistic_regression", "gradient_boosting")},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "sequence")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "sequence.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    table = Path(data) / "oasis2" / "oasis_longitudinal.csv"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    start = time.perf_counter()
    settings = {
        "default": setting(medlens, table, args.work / "default", args.seeds, args.bootstrap, []),
        "without_mmse": setting(medlens, table, args.work / "without_mmse", args.seeds, args.bootstrap, ["MMSE"]),
    }
    result = {
        "benchmark": "sequence_oasis2",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "total_wall_seconds": round(time.perf_counter() - start, 1),
        "settings": settings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
