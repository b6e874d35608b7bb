"""Explanation faithfulness benchmark (issue 10, part 2): every method on PneumoniaMNIST (2D) and AdrenalMNIST3D (3D).

For each set: import the MedMNIST archive, plan, train one seed for a short budget (or reuse a run with ``--run``),
then score every explanation method on a subset of the test split, spread evenly over it (``medlens explain --score``,
through the same library function): deletion and insertion AUC with 95% bootstrap intervals over images, for each
method and for the random-order baseline; model-randomisation similarity; the default method (the one training
chose on validation, recorded in the bundle, and the one the rule picks on these test images); and the time per
image of each method as a ratio to one prediction (``bundle.predict``) timed in the same run.

Target (issue 10): the bundle's default method beats random on deletion (lower) and insertion (higher) with
non-overlapping 95% intervals, and its randomisation similarity is below 0.5. The paired intervals (the mean over
images of default minus random, bootstrapped) are reported beside it.

Writes ``benchmarks/results/explain_<set>.json`` and prints Markdown rows for BENCHMARKS.md.

    flock /work/bench.lock .venv/bin/python benchmarks/explain.py                 # both sets, 100 2D / 40 3D images
    .venv/bin/python benchmarks/explain.py --sets pneumoniamnist --run benchmarks/work/explain/pneumoniamnist/run
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
SETS = {"pneumoniamnist": ("medmnist/pneumoniamnist.npz", 100), "adrenalmnist3d": ("medmnist/adrenalmnist3d.npz", 40)}
SIMILARITY_TARGET = 0.5


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def train(medlens: str, archive: Path, work: Path, budget: float) -> Path:
    """Import, plan and train one seed for ``budget`` minutes; return the run folder."""
    shutil.rmtree(work, ignore_errors=True)
    run([medlens, "-q", "import", "medmnist", str(archive), "--out", str(work / "dataset")])
    run([medlens, "-q", "plan", str(work / "dataset")])
    run([medlens, "-q", "train", str(work / "dataset"), "--out", str(work / "run"), "--seeds", "1",
         "--set", f"train.budget_minutes={budget}"])  # fmt: skip
    return work / "run"


def paired(a: list[float], b: list[float], n_bootstrap: int) -> dict[str, Any]:
    """Mean over images of ``a - b`` with a 95% bootstrap interval (the same images, paired)."""
    from medlens.explanations.faithfulness import mean_with_interval

    return mean_with_interval([x - y for x, y in zip(a, b, strict=True)], n_bootstrap, seed=0)


def verdict(scores: dict[str, Any], method: str) -> dict[str, Any]:
    """The issue's target for ``method``: beats random on both curves with non-overlapping intervals, and a
    randomisation similarity below 0.5."""
    m, r = scores["methods"][method], scores["baselines"]["random"]
    deletion = m["deletion_auc"]["ci95"][1] < r["deletion_auc"]["ci95"][0]
    insertion = m["insertion_auc"]["ci95"][0] > r["insertion_auc"]["ci95"][1]
    similarity = m["randomization_similarity"]["value"] < SIMILARITY_TARGET
    return {
        "deletion_beats_random_non_overlapping": deletion,
        "insertion_beats_random_non_overlapping": insertion,
        "randomization_similarity_below_0.5": similarity,
        "met": deletion and insertion and similarity,
    }


def fmt(entry: dict[str, Any]) -> str:
    lo, hi = entry["ci95"]
    return f"{entry['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--run", type=Path, help="reuse this run (one set only) instead of training")
    parser.add_argument("--budget", type=float, default=3.0, help="training minutes per set (default 3)")
    parser.add_argument("--images", type=int, help="test images per set (default: 100 2D, 40 3D)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "explain")
    args = parser.parse_args()
    if args.run and len(args.sets) != 1:
        sys.exit("--run reuses one run: name its set with --sets")
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set")
    import torch

    from medlens import load_bundle
    from medlens.workflows.explaining import score

    medlens = str(Path(sys.executable).with_name("medlens"))
    rows, default_rows = [], []
    for name in args.sets:
        archive, n_images = SETS[name]
        n_images = args.images or n_images
        work = args.work / name
        start = time.monotonic()
        run_dir = args.run or train(medlens, Path(data) / archive, work, args.budget)
        train_wall = time.monotonic() - start if not args.run else None
        bundle = load_bundle(run_dir)
        print(f"scoring {name}: {n_images} test images, every method", flush=True)
        started = time.monotonic()

        def progress(what: str, done: int, total: int | None, t0: float = started) -> None:
            if done and (done % 10 == 0 or done == total):
                print(f"  {what}: {done}/{total} in {time.monotonic() - t0:.0f} s", flush=True)

        result = score(run_dir, work / "faithfulness", split="test", n_images=n_images, n_bootstrap=args.bootstrap,
                       overwrite=True, progress=progress)  # fmt: skip
        score_wall = time.monotonic() - started
        scores = result.scores
        default = bundle.explanation.get("default") or bundle.task.explain_methods[0]
        random = result.per_image["random"]
        per_method = {}
        for method, entry in scores["methods"].items():
            mine = result.per_image[method]
            per_method[method] = {
                **entry,
                **result.timing[method],
                "random_minus_method_deletion": paired(random["deletion_auc"], mine["deletion_auc"], args.bootstrap),
                "method_minus_random_insertion": paired(mine["insertion_auc"], random["insertion_auc"], args.bootstrap),
                "target": verdict(scores, method),
            }
        summary = {
            "dataset": name,
            "n_test_images": result.n_images,
            "skipped": result.skipped,
            "model": bundle.plan.model.name,
            "bundle_default": default,
            "bundle_default_why": bundle.explanation.get("why"),
            "rule_default_on_test": scores["default"],
            "rule_why_on_test": result.why,
            "target": "the default beats random on deletion and insertion with non-overlapping 95% intervals, and its "
            f"randomisation similarity is below {SIMILARITY_TARGET}",
            "target_met_by_bundle_default": per_method[default]["target"]["met"],
            "methods": per_method,
            "baselines": scores["baselines"],
            "prediction_seconds_per_image": result.prediction_seconds,
            "train_wall_seconds": None if train_wall is None else round(train_wall, 1),
            "score_wall_seconds": round(score_wall, 1),
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.node()} {os.cpu_count()} cores",
            "command": f"flock /work/bench.lock .venv/bin/python benchmarks/explain.py --sets {name} "
            f"--budget {args.budget:g}" + (f" --run {args.run}" if args.run else ""),
        }
        out = ROOT / "results" / f"explain_{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"written {out}", flush=True)
        r = scores["baselines"]["random"]
        for method, e in per_method.items():
            mark = " (default)" if method == default else ""
            rows.append(
                f"| {name} | {method}{mark} | {fmt(e['deletion_auc'])} | {fmt(e['insertion_auc'])} "
                f"| {fmt(e['randomization_similarity'])} | {fmt(e['random_minus_method_deletion'])} "
                f"| {fmt(e['method_minus_random_insertion'])} | {e['time_ratio_to_prediction']}x |"
            )
        rows.append(f"| {name} | random order | {fmt(r['deletion_auc'])} | {fmt(r['insertion_auc'])} | | | | |")
        t = per_method[default]["target"]
        default_rows.append(
            f"| {name} | {result.n_images} | {default} | {scores['default']} "
            f"| {'yes' if t['deletion_beats_random_non_overlapping'] else 'no'} "
            f"| {'yes' if t['insertion_beats_random_non_overlapping'] else 'no'} "
            f"| {'yes' if t['randomization_similarity_below_0.5'] else 'no'} | {'**met**' if t['met'] else 'missed'} |"
        )
    header = (
        "| set | method | deletion AUC (lower: better) | insertion AUC (higher: better) | randomisation similarity "
        "| random - method, deletion (paired) | method - random, insertion (paired) | time / prediction |"
    )
    print("\n" + header)
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| set | test images | bundle default (chosen on val) | rule's pick on test | deletion beats random "
          "(non-overlapping) | insertion beats random (non-overlapping) | similarity < 0.5 | target |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(default_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
