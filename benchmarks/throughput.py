"""Training throughput of `medlens train` against the network's pure compute, measured in the same run.

Pure compute: forward, backward and optimiser step of the planned network at the planned batch size on
tensors already in memory. `medlens train`: images per second over its training batches (data loading,
normalisation, augmentation and Lightning included), from the run's summary. The ratio is what matters on a
shared, noisy machine; pure compute is measured before and after the training run and averaged.

    .venv/bin/python benchmarks/throughput.py [--sets pneumoniamnist adrenalmnist3d] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
SETS = {"pneumoniamnist": "medmnist/pneumoniamnist.npz", "adrenalmnist3d": "medmnist/adrenalmnist3d.npz"}


def pure_compute(plan: object, steps: int) -> float:
    """Images per second of forward + backward + AdamW step on in-memory tensors."""
    from medlens.tasks.classification.module import build_network

    net = build_network(plan).train()  # type: ignore[arg-type]
    b = plan.train.batch_size  # type: ignore[attr-defined]
    x = torch.randn(b, plan.data.channels, *plan.data.input_size)  # type: ignore[attr-defined]
    y = torch.randint(0, len(plan.class_names), (b,))  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * b / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="pure-compute steps per measurement")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "throughput")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set")
    from medlens.tasks.base import load_plan

    medlens = str(Path(sys.executable).with_name("medlens"))
    rows = []
    for name in args.sets:
        work = args.work / name
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(
            [medlens, "-q", "import", "medmnist", str(Path(data) / SETS[name]), "--out", str(work / "ds")],
            check=True,
        )
        subprocess.run([medlens, "-q", "plan", str(work / "ds")], check=True)
        plan = load_plan(work / "ds" / "plan.yaml")
        before = pure_compute(plan, args.steps)
        cmd = [
            medlens,
            "-q",
            "train",
            str(work / "ds"),
            "--out",
            str(work / "run"),
            "--set",
            "train.budget_minutes=null",
            "--set",
            f"train.max_epochs={args.epochs}",
            "--set",
            "train.early_stopping_patience=null",
        ]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        after = pure_compute(plan, args.steps)
        summary = json.loads((work / "run" / "seed_0" / "summary.json").read_text())
        train_ips = summary["train_images_per_second"]
        pure = (before + after) / 2
        result = {
            "dataset": name,
            "model": plan.model.name,
            "model_kwargs": plan.model.kwargs,
            "batch_size": plan.train.batch_size,
            "input_size": plan.data.input_size,
            "train_images_per_second": train_ips,
            "pure_compute_images_per_second": round(pure, 2),
            "pure_compute_before_after": [round(before, 2), round(after, 2)],
            "ratio": round(train_ips / pure, 3),
            "epochs": args.epochs,
            "torch_threads": torch.get_num_threads(),
            "command": f".venv/bin/python benchmarks/throughput.py --sets {name} --epochs {args.epochs}",
        }
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / f"throughput_{name}.json").write_text(json.dumps(result, indent=2))
        rows.append(
            f"| {name} | {plan.model.name} b{plan.train.batch_size} | {train_ips:.1f} | {pure:.1f} "
            f"| {result['ratio']:.2f} |"
        )
    print("\n| dataset | model, batch | medlens train img/s | pure compute img/s | ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
