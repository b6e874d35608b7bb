"""Compression benchmark (issue 13): int8 quantisation and channel pruning of a trained classifier (PneumoniaMNIST)
and segmenter (Hippocampus): size, CPU throughput as a ratio to the fp32 ONNX graph in the same run, metric change.
Targets: int8 >= 2x fp32 throughput, AUC drop <= 0.01, Dice drop <= 0.01.

Runs the real commands (``export --quantize int8``, ``prune``, ``export`` of the pruned run), then scores and times
every graph again in one process (ONNX Runtime, one thread each, the same validation inputs: the task's own
``graph_check``), and writes benchmarks/results/compression_PART.json.

    .venv/bin/python benchmarks/compression.py --part classifier --run RUN --finetune-budget 30s
    .venv/bin/python benchmarks/compression.py --part segmenter --run RUN --finetune-budget 60s
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


def run(cmd: list[str]) -> tuple[int, float, str]:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout[-2000:], done.stderr[-2000:], flush=True)
    return done.returncode, round(time.monotonic() - start, 1), done.stderr.strip()[-600:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["classifier", "segmenter"], required=True)
    parser.add_argument("--run", type=Path, required=True, help="the trained run to compress")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--finetune-budget", default="30s")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "compression")
    args = parser.parse_args()
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work / args.part
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steps: dict[str, dict[str, object]] = {}
    code, seconds, err = run(
        [medlens, "-q", "export", str(args.run), "--out", str(work / "onnx"), "--quantize", "int8"]
    )
    steps["export_int8"] = {"exit": code, "seconds": seconds, "refused": code != 0, "error": err if code else ""}
    if code:  # refused over the tolerance: measure it anyway, and say so
        forced = ["--quantize", "int8", "--force", "--overwrite"]
        code, seconds, _ = run([medlens, "-q", "export", str(args.run), "--out", str(work / "onnx"), *forced])
    code, seconds, err = run([medlens, "-q", "prune", str(args.run), "--out", str(work / "pruned"), "--ratio",
                              str(args.ratio), "--finetune-budget", args.finetune_budget])  # fmt: skip
    steps["prune"] = {"exit": code, "seconds": seconds, "error": err if code else ""}
    pruned = code == 0
    if pruned:
        code, seconds, err = run([medlens, "-q", "export", str(work / "pruned"), "--out", str(work / "pruned_onnx"),
                                  "--quantize", "int8", "--force"])  # fmt: skip
        steps["export_pruned_int8"] = {"exit": code, "seconds": seconds, "error": err if code else ""}

    from medlens.data.dataset import load_dataset
    from medlens.tasks.base import load_bundle
    from medlens.workflows.evaluation import run_dataset
    from medlens.workflows.quantization import images_per_second, runner, session

    bundle = load_bundle(args.run)
    data = load_dataset(run_dataset(args.run))
    check = bundle.task.graph_check(bundle, data, data.split("val"))
    graphs = {"fp32 ONNX": work / "onnx" / "model.onnx", "int8 ONNX": work / "onnx" / "model_int8.onnx"}
    if pruned:
        graphs[f"pruned {args.ratio:g} fp32"] = work / "pruned_onnx" / "model.onnx"
        graphs[f"pruned {args.ratio:g} int8"] = work / "pruned_onnx" / "model_int8.onnx"
    rows = []
    for name, path in graphs.items():
        sess = session(path)
        rows.append({"graph": name, "file": str(path.relative_to(work)), "megabytes": path.stat().st_size / 1e6,
                     check.metric: float(check.score(runner(sess))),
                     "per_second": images_per_second(runner(sess), check.inputs)})  # fmt: skip
    base = rows[0]
    for row in rows:
        row["throughput_ratio"] = row["per_second"] / base["per_second"]
        row[f"{check.metric}_change"] = row[check.metric] - base[check.metric]
    record = json.loads((work / "onnx" / "export.json").read_text())["quantization"]
    made = json.loads((work / "pruned" / "train_summary.json").read_text())["made_from"] if pruned else None
    int8 = rows[1]
    result = {
        "part": args.part,
        "run": str(args.run),
        "model": bundle.plan.model.model_dump(),
        "members": len(bundle.members),
        "metric": f"validation {check.metric} of each ONNX graph ({len(check.inputs)} input batches)",
        "rows": rows,
        "export_record": record,
        "pruning": made,
        "steps": steps,
        "targets": {"int8_throughput_ratio": ">= 2", f"{check.metric}_drop": "<= 0.01"},
        "met": {
            "int8_throughput_ratio": int8["throughput_ratio"] >= 2,
            f"int8_{check.metric}_drop": -int8[f"{check.metric}_change"] <= 0.01,
        },
        "machine": f"{platform.node()} {os.cpu_count()} cores, one ONNX Runtime thread per graph (what else ran: "
        "BENCHMARKS.md)",
        "command": f".venv/bin/python benchmarks/compression.py --part {args.part} --run {args.run} --ratio "
        f"{args.ratio:g} --finetune-budget {args.finetune_budget}",
    }
    out = ROOT / "results" / f"compression_{args.part}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"| graph | MB | {check.metric} | change | per second | ratio to fp32 |")
    for r in rows:
        print(f"| {r['graph']} | {r['megabytes']:.2f} | {r[check.metric]:.4f} | {r[f'{check.metric}_change']:+.4f} "
              f"| {r['per_second']:.1f} | {r['throughput_ratio']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
