"""Federated benchmark (issue 14 part 4): PneumoniaMNIST across 3 sites, IID and label-skewed, with Flower's FedAvg,
against centralised training with the same total budget.

Runs the real command line: ``medlens train`` (centralised, one member, ``--budget B``) and ``medlens federated``
(``--budget B``: shared by every site's every round, B / (rounds x sites) each, so the federation trains as long
as the centralised run), then ``medlens evaluate`` of each on the test split (AUC with a bootstrap interval), and a
paired bootstrap over test images of each federated AUC minus the centralised AUC. Writes
benchmarks/results/federated.json and prints Markdown rows for BENCHMARKS.md.

    .venv/bin/python benchmarks/federated.py --stage data                   # import and plan (no lock needed)
    flock /work/bench.lock .venv/bin/python benchmarks/federated.py --stage runs --budget 2m --rounds 5
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
TARGET = "IID federated test AUC within 0.02 of centralised"


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    return round(time.monotonic() - start, 1)


def scores(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(folder / "predictions.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["case_id"])
    return (
        [r["case_id"] for r in rows],
        np.array([int(r["target"]) for r in rows]),
        np.array([float(r["p_pneumonia"]) for r in rows]),
    )


def paired_difference(central: Path, other: Path, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """AUC(other) - AUC(central) on the same test images, with a paired bootstrap 95% interval (scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    ids_a, y, p_a = scores(central)
    ids_b, y_b, p_b = scores(other)
    if ids_a != ids_b or not np.array_equal(y, y_b):
        raise SystemExit("the evaluations did not score the same test images")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i])) < 2:
            continue
        diffs.append(roc_auc_score(y[i], p_b[i]) - roc_auc_score(y[i], p_a[i]))
    return {
        "value": round(float(roc_auc_score(y, p_b) - roc_auc_score(y, p_a)), 4),
        "ci95": [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["data", "runs", "all"], default="all")
    parser.add_argument("--budget", default="2m", help="total training budget of every row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-epochs", type=int, default=20, help="the round's budget stops a site earlier")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "federated")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "federated.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    dataset = args.work / "dataset"
    if args.stage in ("data", "all") and not (dataset / "plan.yaml").is_file():
        npz = str(Path(data) / "medmnist/pneumoniamnist.npz")
        run([medlens, "-q", "import", "medmnist", npz, "--out", str(dataset)])
        run([medlens, "-q", "plan", str(dataset)])
    if args.stage == "data":
        return 0
    common = ["--budget", args.budget, "--set", "train.explain_images=0", "--overwrite"]
    rows: dict[str, dict[str, object]] = {}
    commands = {
        "centralised": [medlens, "-q", "train", str(dataset), "--out", str(args.work / "centralised"), *common],
        **{
            f"federated {skew}": [
                medlens,
                "-q",
                "federated",
                str(dataset),
                "--out",
                str(args.work / f"federated_{skew}"),
                "--sites",
                str(args.sites),
                "--rounds",
                str(args.rounds),
                "--local-epochs",
                str(args.local_epochs),
                "--skew",
                skew,
                "--alpha",
                str(args.alpha),
                *common,
            ]
            for skew in ("iid", "label")
        },
    }
    for name, cmd in commands.items():
        wall = run(cmd)
        folder = Path(cmd[cmd.index("--out") + 1])
        evaluation = args.work / f"eval_{folder.name}"
        run(
            [
                medlens,
                "-q",
                "evaluate",
                str(folder),
                "--split",
                "test",
                "--out",
                str(evaluation),
                "--overwrite",
                "--bootstrap",
                "1000",
            ]
        )
        metrics = json.loads((evaluation / "metrics.json").read_text())
        summary = json.loads((folder / "train_summary.json").read_text())
        row: dict[str, object] = {
            "command": " ".join(["medlens", *cmd[1:]]).replace(str(ROOT.parent) + "/", ""),
            "test_auc": metrics["auc"],
            "test_accuracy": metrics.get("accuracy"),
            "train_wall_seconds": wall,
        }
        if name.startswith("federated"):
            fed = json.loads((folder / "federation.json").read_text())
            row["sites"] = fed["sites"]
            row["split_rule"] = fed["split_rule"]
            row["site_train_seconds"] = {
                s["site"]: round(
                    sum(
                        float(r["train_seconds"])
                        for r in fed["fit_per_round"]
                        for r in r["sites"]
                        if r["site"] == s["site"]
                    ),
                    1,
                )
                for s in fed["sites"]
            }
            row["auc_minus_centralised"] = paired_difference(args.work / "eval_centralised", evaluation)
        else:
            row["train_seconds"] = summary["train_seconds_per_member"]
        rows[name] = row
    iid = rows["federated iid"]["auc_minus_centralised"]["value"]  # type: ignore[index]
    result = {
        "dataset": "pneumoniamnist (full: 4708 train, 524 val, 624 test), 28x28",
        "budget": args.budget,
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "sites": args.sites,
        "strategy": "fedavg (Flower), simulation",
        "budget_rule": "every row trains the same total budget; federated: budget / (rounds x sites) per site-round",
        "rows": rows,
        "target": TARGET,
        "target_met": abs(float(iid)) <= 0.02 or float(iid) > 0,  # type: ignore[arg-type]
        "machine": f"{platform.node()} {os.cpu_count()} cores, shared with other helpers' work",
        "command": "flock /work/bench.lock .venv/bin/python benchmarks/federated.py --stage runs "
        f"--budget {args.budget} "
        f"--rounds {args.rounds} --local-epochs {args.local_epochs} --sites {args.sites} --alpha {args.alpha}",
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| training | test AUC [95% CI] | AUC - centralised [paired 95% CI] | train wall s |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        auc = row["test_auc"]
        diff = row.get("auc_minus_centralised")
        d = f"{diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff else "-"  # type: ignore[index]
        print(
            f"| {name} | {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}] | {d} | "  # type: ignore[index]
            f"{row['train_wall_seconds']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
