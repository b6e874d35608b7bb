"""Label efficiency: test AUC from scratch vs from a self-supervised encoder (``medlens pretrain``), at a few shares
of the training labels, 3 seeds (issue 13).

PneumoniaMNIST (2D) at 1%, 10%, 100% and AdrenalMNIST3D (28^3) at 10%, 100% of the training labels. Each seed
draws its own label subset (``import --label-fraction F --seed S``; at 100% the seed is the training seed only).
The encoder is pretrained once per dataset, with SimCLR, on that dataset's training images without their labels.
Scratch and pretrained runs use the same network and preprocessing (the full dataset's plan, pinned) and the same
short training budget; test AUC with its bootstrap 95% interval comes from the metric function of
``medlens evaluate`` (see :func:`test_auc`).

Stages (so the timed ones can run under the benchmark lock one at a time)::

    python benchmarks/label_efficiency.py prepare             # imports and plans, untimed
    flock /work/bench.lock python benchmarks/label_efficiency.py pretrain pneumoniamnist
    flock /work/bench.lock python benchmarks/label_efficiency.py runs pneumoniamnist
    python benchmarks/label_efficiency.py report              # results/label_efficiency.json + a Markdown table

Training choices for the benchmark only: the bundle's explanation-method scoring on validation is turned off
(``explain_images = 0``, about 8 s a run that says nothing about AUC).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SETS: dict[str, dict[str, Any]] = {
    "pneumoniamnist": {
        "archive": "medmnist/pneumoniamnist.npz",
        "fractions": [0.01, 0.1, 1.0],
        "target_fraction": 0.01,
        # a quarter-width ResNet-18 (stride-1 stem), for both arms: pretraining gets several epochs in its budget
        "model": {"name": "monai_resnet18", "kwargs": {"widen_factor": 0.25, "stem_stride": 1, "stem_pool": False}},
    },
    "adrenalmnist3d": {
        "archive": "medmnist/adrenalmnist3d.npz",
        "fractions": [0.1, 1.0],
        "target_fraction": 0.1,
        "model": {"name": "monai_resnet18", "kwargs": {"widen_factor": 0.25, "stem_stride": 2, "stem_pool": False}},
    },
}
SEEDS = (0, 1, 2)


def work_dir(args: argparse.Namespace, name: str) -> Path:
    return args.work / name


def dataset_dir(args: argparse.Namespace, name: str, fraction: float, seed: int) -> Path:
    return work_dir(args, name) / ("full" if fraction == 1 else f"labels_{fraction:g}_seed{seed}")


def pinned(args: argparse.Namespace, name: str) -> list[str]:
    """The full dataset's network and intensity preprocessing, so every run (and the encoder) shares them."""
    import yaml

    plan = yaml.safe_load((work_dir(args, name) / "full" / "plan.yaml").read_text())
    model, data = plan["model"], plan["data"]
    return [
        f"model.name={model['name']}",
        f"model.kwargs={json.dumps(model['kwargs'])}",
        f"data.mean={data['mean']}",
        f"data.std={data['std']}",
        f"data.clip={json.dumps(data['clip'])}",
    ]


def prepare(args: argparse.Namespace) -> None:
    from medlens.data.dataset import load_dataset
    from medlens.data.importers import get_importer
    from medlens.training.overrides import save_plan
    from medlens.workflows.planning import make_plan

    data = Path(os.environ["MEDLENS_DATA"])
    for name in args.sets:
        spec = SETS[name]
        shutil.rmtree(work_dir(args, name), ignore_errors=True)
        archive = data / spec["archive"]
        full = get_importer("medmnist")(archive, dataset_dir(args, name, 1.0, 0))
        model = spec["model"]
        plan = make_plan(full, [f"model.name={model['name']}", f"model.kwargs={json.dumps(model['kwargs'])}"])
        save_plan(plan, full.root / "plan.yaml")
        for fraction in spec["fractions"]:
            if fraction < 1:
                for seed in SEEDS:
                    get_importer("medmnist")(
                        archive, dataset_dir(args, name, fraction, seed), label_fraction=fraction, seed=seed
                    )
        print(name, "prepared:", load_dataset(full.root).spec.name, flush=True)


def pretrain_stage(args: argparse.Namespace) -> None:
    from medlens.workflows.pretraining import pretrain

    for name in args.sets:
        out = work_dir(args, name) / "pretrained"
        start = time.monotonic()
        record = pretrain(
            [dataset_dir(args, name, 1.0, 0)],
            out,
            method=args.method,
            budget_minutes=args.pretrain_minutes,
            max_epochs=args.pretrain_epochs,
            overwrite=True,
        )
        record["max_epochs"] = args.pretrain_epochs
        record["wall_seconds"] = round(time.monotonic() - start, 1)
        (work_dir(args, name) / "pretrain_record.json").write_text(json.dumps(record, indent=1, default=str))
        print(name, "pretrained:", record["steps"], "steps", record["epochs"], "epochs", record["seconds"], "s")


def test_auc(run_dir: Path, x: Any, y: Any, class_names: list[str]) -> dict[str, Any]:
    """Test AUC with its bootstrap 95% interval (1000 resamples) of a run's network, by the metric function that
    ``medlens evaluate`` uses; the images are read once per dataset (``evaluate`` would read them again for each of
    the 30 runs and draw its report, about 25 s a run on this machine). Temperature scaling leaves the AUC as is."""
    import numpy as np
    import torch

    from medlens.tasks.base import load_bundle
    from medlens.tasks.classification.metrics import classification_metrics
    from medlens.training.images import normalize

    bundle = load_bundle(run_dir)  # its network: the best checkpoint's, LoRA adapters merged
    plan = bundle.plan
    net = bundle.networks()[0].eval()
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(normalize(x[i : i + 256], plan.data)), 1) for i in range(0, len(x), 256)])
    metrics = classification_metrics(
        np.asarray(y), probs.numpy(), task="binary", class_names=class_names, n_bootstrap=1000
    )
    return dict(metrics["auc"])


def runs_stage(args: argparse.Namespace) -> None:
    import torch

    from medlens.data.dataset import load_dataset
    from medlens.tasks.base import load_plan
    from medlens.tasks.classification import ClassificationTask
    from medlens.training.images import load_in_memory
    from medlens.workflows.training import train

    ClassificationTask.explain_images = 0  # see the module docstring
    for name in args.sets:
        full = load_dataset(dataset_dir(args, name, 1.0, 0))
        test = full.split("test")
        x = load_in_memory(full, test, load_plan(full.root / "plan.yaml").data)
        y = torch.tensor([full.class_index(c) for c in test])
        # --finetune MODE: the pretrained arm again with that mode instead of the plan's auto rule (a side table)
        mode = args.finetune
        results_path = work_dir(args, name) / ("runs.json" if mode == "auto" else f"runs_finetune_{mode}.json")
        results = json.loads(results_path.read_text()) if results_path.is_file() else []
        done = {(r["fraction"], r["seed"], r["start"]) for r in results}
        fractions = [f for f in SETS[name]["fractions"] if not args.fractions or f in args.fractions]
        for fraction in fractions:
            for seed in SEEDS:
                for start in ("scratch", "pretrained") if mode == "auto" else ("pretrained",):
                    if (fraction, seed, start) in done:
                        continue
                    tag = f"{fraction:g}_seed{seed}_{start}" + ("" if mode == "auto" else f"_{mode}")
                    run_dir = work_dir(args, name) / "runs" / tag
                    overrides = [*pinned(args, name), f"train.seed={seed}"]
                    if start == "pretrained":
                        overrides.append(f"model.init={work_dir(args, name) / 'pretrained'}")
                    if mode != "auto":
                        overrides.append(f"train.finetune={mode}")
                    began = time.monotonic()
                    data_dir = dataset_dir(args, name, fraction, seed)
                    summary = train(
                        data_dir, run_dir, budget_minutes=args.train_minutes, overrides=overrides, overwrite=True
                    )
                    auc = test_auc(run_dir, x, y, full.spec.classes)
                    results.append(
                        {
                            "fraction": fraction,
                            "seed": seed,
                            "start": start,
                            "test_auc": auc,
                            "n_train_labelled": len(load_dataset(data_dir).split("train")),
                            "train_seconds": summary["train_seconds_per_member"][0],
                            "wall_seconds": round(time.monotonic() - began, 1),
                            "init": summary.get("init"),
                            "finetune": summary.get("finetune"),
                        }
                    )
                    results_path.write_text(json.dumps(results, indent=1))
                    print(name, tag, "AUC", auc.get("value"), flush=True)


def report_stage(args: argparse.Namespace) -> None:
    out: dict[str, Any] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "what_else_ran": args.else_ran,
        "train_budget_minutes": args.train_minutes,
        "method": args.method,
        "seeds": list(SEEDS),
        "sets": {},
    }
    lines = [
        "| dataset | labels | scratch AUC (mean ± sd) [mean 95% CI] | pretrained AUC (mean ± sd) [mean 95% CI] "
        "| difference | target |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.sets:
        results_path = work_dir(args, name) / "runs.json"
        record_path = work_dir(args, name) / "pretrain_record.json"
        if not results_path.is_file():
            continue
        results = json.loads(results_path.read_text())
        pre = json.loads(record_path.read_text()) if record_path.is_file() else {}
        rows = []
        for fraction in SETS[name]["fractions"]:
            arms = {}
            for start in ("scratch", "pretrained"):
                runs = [r for r in results if r["fraction"] == fraction and r["start"] == start]
                values = [r["test_auc"]["value"] for r in runs]
                lows = [_ci(r["test_auc"])[0] for r in runs]
                highs = [_ci(r["test_auc"])[1] for r in runs]
                arms[start] = {
                    "n": len(values),
                    "auc_mean": round(statistics.fmean(values), 4) if values else None,
                    "auc_sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    "ci_low_mean": round(statistics.fmean(lows), 4) if lows else None,
                    "ci_high_mean": round(statistics.fmean(highs), 4) if highs else None,
                    "per_seed": values,
                }
            a, b = arms["scratch"], arms["pretrained"]
            diff = round(b["auc_mean"] - a["auc_mean"], 4) if a["auc_mean"] is not None and b["auc_mean"] else None
            target_fraction = SETS[name]["target_fraction"]
            if fraction == target_fraction:
                target, met = "pretrained >= scratch + 0.05", diff is not None and diff >= 0.05
            elif fraction == 1:  # "no worse": within 0.01 AUC, far inside every run's own 95% interval
                target, met = "pretrained no worse (>= -0.01)", diff is not None and diff >= -0.01
            else:
                target, met = "(none)", None
            rows.append({"fraction": fraction, **arms, "difference": diff, "target": target, "met": met})
            lines.append(
                f"| {name} | {fraction:.0%} | {_fmt(a)} | {_fmt(b)} | {diff:+.3f} | {target}: "
                f"{'met' if met else 'missed' if met is not None else '-'} |"
                if diff is not None
                else f"| {name} | {fraction:.0%} | {_fmt(a)} | {_fmt(b)} | - | {target} |"
            )
        out["sets"][name] = {
            "rows": rows,
            "pretraining": {
                k: pre.get(k)
                for k in (
                    "method",
                    "backbone",
                    "budget_minutes",
                    "max_epochs",
                    "steps",
                    "epochs",
                    "seconds",
                    "images",
                    "batch_size",
                )
            },
            "commands": [
                "python benchmarks/label_efficiency.py prepare",
                f"flock /work/bench.lock python benchmarks/label_efficiency.py pretrain {name} "
                f"--pretrain-minutes {pre.get('budget_minutes')} --pretrain-epochs {pre.get('max_epochs')}",
                f"flock /work/bench.lock python benchmarks/label_efficiency.py runs {name} "
                f"--train-minutes {args.train_minutes}",
            ],
            "runs": results,
        }
    side = ["| dataset | labels | pretrained arm fine-tuning | test AUC (mean ± sd) [mean 95% CI] | vs scratch |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name in args.sets:
        if name not in out["sets"]:
            continue
        modes: dict[str, Any] = {}
        for path in sorted(work_dir(args, name).glob("runs_finetune_*.json")):
            mode = path.stem.removeprefix("runs_finetune_")
            results = json.loads(path.read_text())
            for fraction in sorted({r["fraction"] for r in results}):
                values = [r["test_auc"]["value"] for r in results if r["fraction"] == fraction]
                arm = {
                    "n": len(values),
                    "auc_mean": round(statistics.fmean(values), 4),
                    "auc_sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    "ci_low_mean": round(statistics.fmean(_ci(r["test_auc"])[0] for r in results
                                                          if r["fraction"] == fraction), 4),
                    "ci_high_mean": round(statistics.fmean(_ci(r["test_auc"])[1] for r in results
                                                           if r["fraction"] == fraction), 4),
                    "per_seed": values,
                }  # fmt: skip
                scratch = next(r["scratch"] for r in out["sets"][name]["rows"] if r["fraction"] == fraction)
                arm["difference"] = round(arm["auc_mean"] - scratch["auc_mean"], 4)
                modes.setdefault(mode, {})[str(fraction)] = arm
                side.append(f"| {name} | {fraction:.0%} | {mode} | {_fmt(arm)} | {arm['difference']:+.3f} |")
        out["sets"][name]["finetune_modes"] = modes
    out["table"] = "\n".join(lines)
    out["finetune_table"] = "\n".join(side)
    path = args.out
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(out["table"])
    print(out["finetune_table"])


def _ci(entry: dict[str, Any]) -> tuple[float, float]:
    """The 95% interval of a metrics entry."""
    return float(entry["ci95"][0]), float(entry["ci95"][1])


def _fmt(arm: dict[str, Any]) -> str:
    if arm["auc_mean"] is None:
        return "-"
    return f"{arm['auc_mean']:.3f} ± {arm['auc_sd'] or 0:.3f} [{arm['ci_low_mean']:.3f}, {arm['ci_high_mean']:.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["prepare", "pretrain", "runs", "report"])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "label_efficiency")
    parser.add_argument("--train-minutes", type=float, default=0.4, help="train.budget_minutes of every run")
    parser.add_argument("--pretrain-minutes", type=float, default=4.0, help="pretraining's wall-clock budget")
    parser.add_argument(
        "--pretrain-epochs", type=int, default=200, help="pretraining stops after this many epochs if sooner"
    )
    parser.add_argument(
        "--finetune", default="auto", help="runs: the pretrained arm with this train.finetune (a side table)"
    )
    parser.add_argument("--fractions", type=float, nargs="*", default=[], help="runs: only these label fractions")
    parser.add_argument("--else-ran", default="", help="what else ran on the machine, for the record")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "label_efficiency.json")
    args = parser.parse_args()
    if not os.environ.get("MEDLENS_DATA"):
        sys.exit("MEDLENS_DATA is not set")
    {"prepare": prepare, "pretrain": pretrain_stage, "runs": runs_stage, "report": report_stage}[args.stage](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
