"""Ray benchmarks (issue 14 parts 2 and 3): batch inference throughput and a killed worker; Tune against one run.

Stages (each timed stage is one command, run under ``flock /work/bench.lock``):

    .venv/bin/python benchmarks/ray_scaling.py prepare            # PNGs and a model (not timed)
    flock /work/bench.lock .venv/bin/python benchmarks/ray_scaling.py inference   # single-process vs --ray
    flock /work/bench.lock .venv/bin/python benchmarks/ray_scaling.py kill        # --ray, one actor killed midway
    flock /work/bench.lock .venv/bin/python benchmarks/ray_scaling.py tune --budget 4   # 8 trials in 4 min
    flock /work/bench.lock .venv/bin/python benchmarks/ray_scaling.py default --budget 4  # the default plan, 4 min
    .venv/bin/python benchmarks/ray_scaling.py evaluate            # test AUC of both (not timed)

``prepare`` writes 5,000 real PneumoniaMNIST images as PNG (all 624 test and 524 val images, then the first 3,852
train images: test+val hold only 1,148) and a list file of them, imports the full set and trains a small model.
Results go to ``benchmarks/results/ray_inference.json`` and ``ray_tune.json``.
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
from typing import Any

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "ray"
RESULTS = ROOT / "results"
MEDLENS = [str(Path(sys.executable).parent / "medlens")]
N_IMAGES = 5000


def run(cmd: list[str], **kwargs: Any) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, **kwargs)
    return round(time.monotonic() - start, 2)


def load() -> float:
    return os.getloadavg()[0]


def update(name: str, values: dict[str, Any]) -> None:
    path = RESULTS / f"{name}.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    current |= values
    current["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, shared with other helpers' work"
    path.write_text(json.dumps(current, indent=2) + "\n")
    print(json.dumps(values, indent=2))


def prepare() -> None:
    import numpy as np
    from PIL import Image

    data = np.load(Path(os.environ["MEDLENS_DATA"]) / "medmnist" / "pneumoniamnist.npz")
    images = np.concatenate([data["test_images"], data["val_images"], data["train_images"]])[:N_IMAGES]
    pngs = WORK / "pngs"
    pngs.mkdir(parents=True, exist_ok=True)
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(pngs / f"x{i:05d}.png")
    (WORK / "inputs.txt").write_text("".join(f"pngs/x{i:05d}.png\n" for i in range(len(images))))
    if not (WORK / "ds").exists():
        run([*MEDLENS, "-q", "import", "medmnist", str(Path(os.environ["MEDLENS_DATA"]) / "medmnist" /
             "pneumoniamnist.npz"), "--out", str(WORK / "ds")])  # fmt: skip
        run([*MEDLENS, "-q", "plan", str(WORK / "ds")])
    if not (WORK / "model").exists():
        run([*MEDLENS, "-q", "train", str(WORK / "ds"), "--out", str(WORK / "model"), "--budget", "1m",
             "--set", "train.explain_images=0"])  # fmt: skip


def _outputs_once(out: Path) -> dict[str, Any]:
    """Every input's outputs exactly once: one JSON per input, one row per input, one journal record each."""
    expected = {f"x{i:05d}" for i in range(N_IMAGES)}
    jsons = sorted(p.stem for p in out.glob("*.json"))
    with open(out / "predictions.csv") as handle:
        rows = [r["input"] for r in csv.DictReader(handle)]
    records = {p.stem for p in (out / ".journal").glob("x*.json")}
    return {
        "inputs": N_IMAGES,
        "json_files": len(jsons),
        "json_files_unique_and_complete": set(jsons) == expected and len(jsons) == len(expected),
        "csv_rows": len(rows),
        "csv_rows_unique": len(set(rows)) == len(rows) == N_IMAGES,
        "journal_records_complete": records == expected,
        "staging_left": (out / ".journal" / "staging").exists(),
    }


def _same_labels(a: Path, b: Path) -> bool:
    def labels(folder: Path) -> list[tuple[str, str]]:
        with open(folder / "predictions.csv") as handle:
            return [(r["input"], r["prediction"]) for r in csv.DictReader(handle)]

    return labels(a) == labels(b)


def inference() -> None:
    env = os.environ | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    single_env = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}  # torch's own default: every core
    for name in ("single", "ray"):
        if (WORK / name).exists():
            run(["rm", "-rf", str(WORK / name)])
    before = load()
    single = run([*MEDLENS, "-q", "predict", str(WORK / "model"), str(WORK / "pngs"), "--out",
                  str(WORK / "single")], env=single_env, cwd=WORK)  # fmt: skip
    ray = run([*MEDLENS, "-q", "predict", str(WORK / "model"), str(WORK / "pngs"), "--out", str(WORK / "ray"),
               "--ray"], env=env, cwd=WORK)  # fmt: skip
    update("ray_inference", {
        "images": N_IMAGES,
        "single_process_seconds": single,
        "ray_seconds": ray,
        "single_images_per_second": round(N_IMAGES / single, 1),
        "ray_images_per_second": round(N_IMAGES / ray, 1),
        "throughput_ratio_ray_to_single": round(single / ray, 3),
        "target": ">= 0.9",
        "same_predictions": _same_labels(WORK / "single", WORK / "ray"),
        "outputs": _outputs_once(WORK / "ray"),
        "load_average_before": round(before, 2),
        "notes": "wall time of each whole command (process start, model load, Ray start-up included); single "
        "process with torch's default threads (2), Ray with one actor per core (one thread each)",
        "commands": [
            "medlens predict model pngs --out single",
            "medlens predict model pngs --out ray --ray",
        ],
    })  # fmt: skip


def kill() -> None:
    """--ray with one predicting actor killed (SIGKILL, by its process id) when 40% of the outputs exist."""
    import psutil

    out = WORK / "ray_killed"
    if out.exists():
        run(["rm", "-rf", str(out)])
    cmd = [*MEDLENS, "-q", "predict", str(WORK / "model"), str(WORK / "inputs.txt"), "--out", str(out), "--ray"]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    driver = subprocess.Popen(cmd, cwd=WORK)
    killed: dict[str, Any] = {}
    while driver.poll() is None:
        time.sleep(0.5)
        done = len(list((out / ".journal").glob("x*.json"))) if (out / ".journal").exists() else 0
        if not killed and done >= 0.4 * N_IMAGES:
            workers = [
                p for p in psutil.Process(driver.pid).children(recursive=True)
                if "MapWorker" in " ".join(p.cmdline() or [p.name()])
            ]  # fmt: skip
            if workers:
                victim = workers[0]
                victim.kill()
                killed = {"pid": victim.pid, "outputs_done_when_killed": done,
                          "seconds_when_killed": round(time.monotonic() - start, 1)}  # fmt: skip
                print("killed", killed, flush=True)
    seconds = round(time.monotonic() - start, 2)
    update("ray_inference", {
        "killed_worker_run": {
            "exit_code": driver.returncode,
            "seconds": seconds,
            "killed": killed,
            "outputs": _outputs_once(out),
            "same_predictions_as_single_process": _same_labels(WORK / "single", out),
            "command": "medlens predict model inputs.txt --out ray_killed --ray  (one MapWorker actor SIGKILLed "
            "when 40% of the outputs existed)",
        }
    })  # fmt: skip


def tune(budget: float) -> None:
    out = WORK / "tune"
    if out.exists():
        run(["rm", "-rf", str(out)])
    seconds = run([*MEDLENS, "-q", "tune", str(WORK / "ds"), "--out", str(out), "--trials", "8", "--budget",
                   f"{budget}m", "--set", "train.explain_images=0"])  # fmt: skip
    summary = json.loads((out / "tune.json").read_text())
    update("ray_tune", {"tune": {"budget_minutes": budget, "wall_seconds": seconds, "trials": 8,
                                 "best": summary["best"], "finished": summary["finished"],
                                 "stopped_early": summary["stopped_early"], "failed": summary["failed"],
                                 "space": summary["space"],
                                 "command": f"medlens tune ds --out tune --trials 8 --budget {budget}m "
                                            "--set train.explain_images=0"}})  # fmt: skip


def default(budget: float) -> None:
    out = WORK / "default"
    if out.exists():
        run(["rm", "-rf", str(out)])
    seconds = run([*MEDLENS, "-q", "train", str(WORK / "ds"), "--out", str(out), "--budget", f"{budget}m",
                   "--set", "train.explain_images=0"])  # fmt: skip
    update("ray_tune", {"default": {"budget_minutes": budget, "wall_seconds": seconds,
                                    "command": f"medlens train ds --out default --budget {budget}m "
                                               "--set train.explain_images=0"}})  # fmt: skip


def evaluate() -> None:
    found = {}
    for name, run_dir in (("tune_best", WORK / "tune" / "best"), ("default", WORK / "default")):
        out = WORK / f"eval_{name}"
        if out.exists():
            run(["rm", "-rf", str(out)])
        run([*MEDLENS, "-q", "evaluate", str(run_dir), "--out", str(out)])
        metrics = json.loads((out / "metrics.json").read_text())
        found[f"{name}_test_auc"] = metrics["auc"]
    update("ray_tune", found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["prepare", "inference", "kill", "tune", "default", "evaluate"])
    parser.add_argument("--budget", type=float, default=4.0, help="minutes (tune: in total; default: the run)")
    args = parser.parse_args()
    if not os.environ.get("MEDLENS_DATA"):
        sys.exit("MEDLENS_DATA is not set")
    RESULTS.mkdir(exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    {"prepare": prepare, "inference": inference, "kill": kill, "evaluate": evaluate}.get(
        args.stage, lambda: (tune if args.stage == "tune" else default)(args.budget)
    )()
    return 0


if __name__ == "__main__":
    sys.exit(main())
