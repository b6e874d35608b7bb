"""Attention over slices against the default 3D CNN on AdrenalMNIST3D 64 (issue 15 part 3).

Both arms train through the ordinary 3D classification path with the dataset's default plan; the slice arm only
changes ``model.name`` to ``slice_attention`` (the plan's width and stem kwargs go to its 2D backbone). Each arm:
3 seeds, the same wall-clock budget per seed (``train.budget_minutes``), then every test volume predicted once.
Test AUC per seed and of the 3-seed ensemble with 95% percentile bootstrap intervals; the difference between the
arms from the same (paired) resamples of the test cases.

Training skips the scoring of explanation methods on validation (``train.explain_images=0``): it is not part of the
comparison and would spend the lock's minutes on both arms alike.

    # one arm at a time under the benchmark lock, then the comparison (no training)
    flock /work/bench.lock .venv/bin/python benchmarks/slice_attention.py run cnn3d --budget 1.25
    flock /work/bench.lock .venv/bin/python benchmarks/slice_attention.py run slice_attention --budget 1.25
    .venv/bin/python benchmarks/slice_attention.py compare
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
ARMS: dict[str, list[str]] = {"cnn3d": [], "slice_attention": ["model.name=slice_attention"]}
SEEDS = 3
N_BOOTSTRAP = 2000


def run_arm(arm: str, work: Path, budget: float) -> None:
    """Train one arm (3 seeds, ``budget`` minutes each) and save its test probabilities per seed."""
    from medlens.cli.main import main
    from medlens.data.dataset import load_dataset
    from medlens.tasks.base import load_bundle
    from medlens.tasks.classification.attention import attention_summary
    from medlens.tasks.classification.training import targets_of
    from medlens.training.images import case_images
    from medlens.workflows.training import train

    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set")
    dataset_dir = work / "dataset"
    if not dataset_dir.exists():
        archive = Path(data) / "medmnist" / "adrenalmnist3d_64.npz"
        if main(["-q", "import", "medmnist", str(archive), "--out", str(dataset_dir)]) != 0:
            sys.exit("import failed")
    start = time.monotonic()
    summary = train(
        dataset_dir,
        work / arm,
        budget_minutes=budget,
        seeds=SEEDS,
        overrides=["train.explain_images=0", *ARMS[arm]],
        overwrite=True,
    )
    wall = time.monotonic() - start
    dataset = load_dataset(dataset_dir)
    cases = dataset.split("test")
    bundle = load_bundle(work / arm)
    start = time.monotonic()
    predictions = list(bundle.predict_many(case_images(dataset, cases)))
    predict_seconds = time.monotonic() - start
    y = targets_of(dataset, cases).numpy()
    per_seed = np.stack([p.member_probabilities[:, 1] for p in predictions], axis=1)  # (seeds, N)
    np.savez(work / f"{arm}_test.npz", y=y, per_seed=per_seed)
    plan = bundle.plan
    info = {
        "arm": arm,
        "model": plan.model.name,
        "kwargs": plan.model.kwargs,
        "input_size": plan.data.input_size,
        "batch_size": plan.train.batch_size,
        "budget_minutes_per_seed": budget,
        "train_seconds_per_seed": summary.get("train_seconds_per_member"),
        "epochs_per_seed": [m.get("epochs") for m in summary.get("member_summaries", [])],
        "val_auc_per_seed": summary.get("val_auc_per_member"),
        "train_wall_seconds_all_seeds": round(wall, 1),
        "predict_seconds_test": round(predict_seconds, 1),
        "n_test": len(cases),
        "slice_attention": attention_summary(predictions, y, bundle.class_names),  # type: ignore[arg-type]
    }
    (work / f"{arm}_info.json").write_text(json.dumps(info, indent=2, default=str))


def _auc_samples(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    from medlens.metrics.bootstrap import weighted_roc_auc

    return np.asarray(weighted_roc_auc(scores, y, weights), dtype=np.float64)


def _entry(value: float, samples: np.ndarray) -> dict[str, Any]:
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return {"value": round(float(value), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def compare(work: Path, out: Path) -> dict[str, Any]:
    """Per-seed and ensemble test AUC of both arms with paired 95% bootstrap intervals, and their differences."""
    from medlens.core.outputs import write_json
    from medlens.metrics.bootstrap import resample_weights

    arms = {arm: np.load(work / f"{arm}_test.npz") for arm in ARMS}
    y = arms["cnn3d"]["y"]
    if not all(np.array_equal(a["y"], y) for a in arms.values()):
        sys.exit("the arms were tested on different cases")
    ones = np.ones((1, len(y)))
    blocks = list(resample_weights(len(y), N_BOOTSTRAP, seed=0))
    result: dict[str, Any] = {"arms": {}}
    mean_samples, ensemble_samples = {}, {}
    for arm, data in arms.items():
        per_seed = data["per_seed"]  # (seeds, N)
        seeds = []
        seed_samples = []
        for scores in per_seed:
            samples = np.concatenate([_auc_samples(y, scores, w) for w in blocks])
            seed_samples.append(samples)
            seeds.append(_entry(float(_auc_samples(y, scores, ones)[0]), samples))
        ensemble = per_seed.mean(axis=0)
        ensemble_samples[arm] = np.concatenate([_auc_samples(y, ensemble, w) for w in blocks])
        mean_samples[arm] = np.mean(seed_samples, axis=0)
        values = [s["value"] for s in seeds]
        info = json.loads((work / f"{arm}_info.json").read_text())
        result["arms"][arm] = {
            **info,
            "test_auc_per_seed": seeds,
            "test_auc_seed_mean": _entry(float(np.mean(values)), mean_samples[arm]),
            "test_auc_seed_sd": round(float(np.std(values, ddof=1)), 4),
            "test_auc_ensemble": _entry(float(_auc_samples(y, ensemble, ones)[0]), ensemble_samples[arm]),
        }
    a, b = result["arms"]["slice_attention"], result["arms"]["cnn3d"]
    result["difference_slice_minus_cnn3d"] = {
        "seed_mean_auc": _entry(
            a["test_auc_seed_mean"]["value"] - b["test_auc_seed_mean"]["value"],
            mean_samples["slice_attention"] - mean_samples["cnn3d"],
        ),
        "ensemble_auc": _entry(
            a["test_auc_ensemble"]["value"] - b["test_auc_ensemble"]["value"],
            ensemble_samples["slice_attention"] - ensemble_samples["cnn3d"],
        ),
    }
    result["interval_method"] = (
        f"95% percentile bootstrap over the {len(y)} test cases, {N_BOOTSTRAP} resamples (seed 0), the same resamples "
        "for every seed and both arms (paired differences); the seed mean's interval resamples cases, not seeds"
    )
    result["dataset"] = "AdrenalMNIST3D 64 (medmnist/adrenalmnist3d_64.npz), official train/val/test split"
    result["machine"] = f"{platform.node()} {os.cpu_count()} cores (what else ran: BENCHMARKS.md)"
    result["commands"] = [
        "flock /work/bench.lock .venv/bin/python benchmarks/slice_attention.py run cnn3d --budget B",
        "flock /work/bench.lock .venv/bin/python benchmarks/slice_attention.py run slice_attention --budget B",
        ".venv/bin/python benchmarks/slice_attention.py compare",
    ]
    write_json(out, result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and test one arm")
    run.add_argument("arm", choices=list(ARMS))
    run.add_argument("--budget", type=float, default=1.25, help="training minutes per seed")
    cmp = sub.add_parser("compare", help="AUCs with paired intervals from the saved test probabilities")
    cmp.add_argument("--out", type=Path, default=ROOT / "results" / "slice_attention.json")
    for p in (run, cmp):
        p.add_argument("--work", type=Path, default=Path("/tmp/medlens_slice_attention_bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "run":
        run_arm(args.arm, args.work, args.budget)
        return 0
    result = compare(args.work, args.out)
    for arm, entry in result["arms"].items():
        e = entry["test_auc_ensemble"]
        m = entry["test_auc_seed_mean"]
        print(
            f"{arm}: seed-mean AUC {m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] "
            f"(sd {entry['test_auc_seed_sd']:.3f}), ensemble {e['value']:.3f} "
            f"[{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}], "
            f"train s/seed {entry['train_seconds_per_seed']}, epochs {entry['epochs_per_seed']}"
        )
    d = result["difference_slice_minus_cnn3d"]
    print(f"difference (slice - cnn3d): {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
