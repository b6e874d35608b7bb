"""Distillation benchmark (issue 13): a 3-seed PneumoniaMNIST ensemble (the teacher) into one student with at least
3x fewer FLOPs; target: the student's test AUC within 0.01 of the ensemble's.

Runs the real command line on the whole PneumoniaMNIST archive in MEDLENS_DATA (import, plan, train --seeds 3
--budget TEACHER, evaluate, distill --budget STUDENT, evaluate) and writes benchmarks/results/distillation.json.

    .venv/bin/python benchmarks/distillation.py --teacher-budget 70s --student-budget 150s
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


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    return round(time.monotonic() - start, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-budget", default="70s", help="training budget per teacher seed")
    parser.add_argument("--student-budget", default="150s", help="the student's training budget")
    parser.add_argument("--student", default=None, help="student network (default: distill's own choice)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "distillation")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "distillation.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    archive = str(Path(data) / "medmnist/pneumoniamnist.npz")
    run([medlens, "-q", "import", "medmnist", archive, "--out", str(work / "ds")])
    run([medlens, "-q", "plan", str(work / "ds")])
    teacher_wall = run([medlens, "-q", "train", str(work / "ds"), "--out", str(work / "teacher"), "--seeds", "3",
                        "--budget", args.teacher_budget])  # fmt: skip
    run([medlens, "-q", "evaluate", str(work / "teacher"), "--out", str(work / "teacher_eval")])
    student = ["--student", args.student] if args.student else []
    student_wall = run([medlens, "-q", "distill", str(work / "teacher"), "--out", str(work / "student"), "--budget",
                        args.student_budget, *student])  # fmt: skip
    run([medlens, "-q", "evaluate", str(work / "student"), "--out", str(work / "student_eval")])
    teacher = json.loads((work / "teacher_eval" / "metrics.json").read_text())
    student_metrics = json.loads((work / "student_eval" / "metrics.json").read_text())
    made = json.loads((work / "student" / "train_summary.json").read_text())["made_from"]
    plan = __import__("yaml").safe_load((work / "student" / "plan.yaml").read_text())
    teacher_plan = __import__("yaml").safe_load((work / "teacher" / "plan.yaml").read_text())
    difference = student_metrics["auc"]["value"] - teacher["auc"]["value"]
    result = {
        "dataset": "pneumoniamnist (whole archive: 4708 train, 524 val, 624 test)",
        "teacher": {
            "model": teacher_plan["model"],
            "members": 3,
            "budget_per_seed": args.teacher_budget,
            "train_wall_seconds": teacher_wall,
            "test_auc": teacher["auc"],
            "test_auc_per_seed": [s["auc"] for s in teacher["seeds"]["per_seed"]],
            "test_accuracy": teacher["accuracy"],
            "gflops_per_image": made["teacher_gflops"],
        },
        "student": {
            "model": plan["model"],
            "budget": args.student_budget,
            "train_wall_seconds": student_wall,
            "test_auc": student_metrics["auc"],
            "test_accuracy": student_metrics["accuracy"],
            "gflops_per_image": made["student_gflops"],
            "loss": made["loss"],
        },
        "flops_ratio": made["flops_ratio"],
        "auc_student_minus_teacher": difference,
        "target": "student test AUC within 0.01 of the ensemble's, with >= 3x fewer FLOPs",
        "met": bool(difference >= -0.01 and made["flops_ratio"] >= 3 - 1e-9),
        "machine": f"{platform.node()} {os.cpu_count()} cores (what else ran: BENCHMARKS.md)",
        "command": f".venv/bin/python benchmarks/distillation.py --teacher-budget {args.teacher_budget} "
        f"--student-budget {args.student_budget}" + (f" --student {args.student}" if args.student else ""),
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("flops_ratio", "auc_student_minus_teacher", "met")}))
    print(f"teacher AUC {teacher['auc']['value']:.4f} {teacher['auc'].get('ci95')}, "
          f"student AUC {student_metrics['auc']['value']:.4f} {student_metrics['auc'].get('ci95')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
