"""The control arm of the pruning rows (issue 13): the same run fine-tuned for the same budget with **no channel
removed**, so that a pruned network's metric change can be told apart from the effect of training longer.

It runs ``medlens prune``'s own workflow (``medlens.workflows.compression.prune``) with torch-pruning's step
replaced by a plain copy of each member (the only change; the fine-tune, the bundle and the export are the real
ones), exports the result to ONNX and scores and times it beside the run's own fp32 graph, as
``benchmarks/compression.py`` does.

    flock /work/bench.lock .venv/bin/python benchmarks/compression_control.py \
        --part segmenter --run RUN --finetune-budget 3m
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["classifier", "segmenter"], required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--finetune-budget", default="3m")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "compression_control")
    args = parser.parse_args()

    import medlens.models.pruning as pruning
    from medlens.cli.model_commands import parse_duration
    from medlens.data.dataset import load_dataset
    from medlens.tasks.base import load_bundle
    from medlens.workflows.compression import prune
    from medlens.workflows.evaluation import run_dataset
    from medlens.workflows.quantization import images_per_second, runner, session

    def unpruned(net: Any, input_shape: list[int], ratio: float, num_classes: int) -> Any:
        return copy.deepcopy(net).eval()  # the control: every channel kept

    pruning.prune_network = unpruned  # type: ignore[assignment]
    work = args.work / args.part
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prune(args.run, work / "finetuned", ratio=0.5, finetune_minutes=parse_duration(args.finetune_budget))
    medlens = str(Path(sys.executable).with_name("medlens"))
    for source, target in ((args.run, "onnx"), (work / "finetuned", "finetuned_onnx")):
        subprocess.run([medlens, "-q", "export", str(source), "--out", str(work / target)], check=True)

    bundle = load_bundle(args.run)
    data = load_dataset(run_dataset(args.run))
    check = bundle.task.graph_check(bundle, data, data.split("val"))
    rows = []
    for name, path in (("fp32 ONNX", work / "onnx" / "model.onnx"),
                       ("unpruned + the same fine-tune, fp32", work / "finetuned_onnx" / "model.onnx")):  # fmt: skip
        sess = session(path)
        rows.append({"graph": name, check.metric: float(check.score(runner(sess))),
                     "per_second": images_per_second(runner(sess), check.inputs)})  # fmt: skip
    for row in rows:
        row["throughput_ratio"] = row["per_second"] / rows[0]["per_second"]
        row[f"{check.metric}_change"] = row[check.metric] - rows[0][check.metric]
    result = {
        "part": args.part,
        "run": str(args.run),
        "metric": f"validation {check.metric} of each ONNX graph ({len(check.inputs)} input batches)",
        "rows": rows,
        "finetune_budget": args.finetune_budget,
        "machine": f"{platform.node()} {os.cpu_count()} cores, one ONNX Runtime thread per graph",
        "command": f".venv/bin/python benchmarks/compression_control.py --part {args.part} --run {args.run} "
        f"--finetune-budget {args.finetune_budget}",
    }
    (ROOT / "results" / f"compression_{args.part}_control.json").write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"| {r['graph']} | {r[check.metric]:.4f} | {r[f'{check.metric}_change']:+.4f} | {r['per_second']:.1f} "
              f"| {r['throughput_ratio']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
