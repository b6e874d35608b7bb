"""Denoising benchmark: the denoising U-Net against non-local means and total variation, PneumoniaMNIST (2D) and
MSD Task04 Hippocampus (3D), at two noise levels each.

Runs the real command line: ``medlens import`` (PneumoniaMNIST's official split; Hippocampus split by seed 0),
``medlens denoise train`` with a short budget and ``medlens denoise evaluate`` on the test split (624 pictures; 44
volumes). Target: the autoencoder beats non-local means in PSNR and SSIM. One row per dataset and noise level,
merged into benchmarks/results/denoising.json, so each row can run alone under the benchmark lock:

    flock /work/bench.lock .venv/bin/python benchmarks/denoising.py --dataset pneumoniamnist --level mild --budget 2m
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import split_sizes

ROOT = Path(__file__).resolve().parent
TARGET = "the autoencoder beats non-local means in PSNR and SSIM on the test split"
LEVELS = {"mild": "gaussian:0.05,poisson:200", "strong": "gaussian:0.1,poisson:50"}
SOURCES = {"pneumoniamnist": "medmnist/pneumoniamnist.npz", "hippocampus": "Task04_Hippocampus"}


def medlens(*args: str) -> tuple[float, str]:
    """Run ``medlens ARGS``; its wall-clock seconds and the command as typed."""
    command = [str(Path(sys.executable).parent / "medlens"), "-q", *args]
    start = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - start, "medlens " + " ".join(args)


def dataset(name: str, work: Path) -> Path:
    folder = work / name
    if not (folder / "dataset.yaml").is_file():
        source = Path(os.environ["MEDLENS_DATA"]) / SOURCES[name]
        kind = "medmnist" if name == "pneumoniamnist" else "msd"
        medlens("import", kind, str(source), "--out", str(folder), "--overwrite")
    return folder


def row(name: str, level: str, budget: str, work: Path) -> dict[str, Any]:
    data = dataset(name, work)
    noise = LEVELS[level]
    ae, evaluation = work / f"ae_{name}_{level}", work / f"eval_{name}_{level}"
    train_s, train_cmd = medlens(
        "denoise", "train", str(data), "--out", str(ae), "--noise", noise, "--budget", budget, "--overwrite"
    )
    eval_s, eval_cmd = medlens(
        "denoise", "evaluate", str(ae), "--dataset", str(data), "--out", str(evaluation), "--overwrite"
    )
    result = json.loads((evaluation / "denoise.json").read_text())
    methods = result["methods"]
    ae_vs_nlm = result["comparisons"]["autoencoder_minus_nl_means"]
    beats = {m: methods["autoencoder"][m]["value"] > methods["nl_means"][m]["value"] for m in ("psnr", "ssim")}
    return {
        "dataset": name,
        "noise_level": level,
        "noise": noise,
        "split_sizes": split_sizes(data),
        "budget": budget,
        "training": result["denoiser"]["training"],
        "train_seconds": round(train_s, 1),
        "evaluate_seconds": round(eval_s, 1),
        "methods": methods,
        "autoencoder_minus_nl_means": ae_vs_nlm,
        "latent": result["latent"],
        "bm3d": result["bm3d"],
        "method_seconds": result["seconds"],
        "target_met": beats["psnr"] and beats["ssim"],
        "beats_nl_means": beats,
        "commands": [train_cmd, eval_cmd],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(SOURCES), required=True)
    parser.add_argument("--level", choices=sorted(LEVELS), required=True)
    parser.add_argument("--budget", default="2m", help="training budget of the denoiser (default 2m)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "denoising")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "denoising.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    new = row(args.dataset, args.level, args.budget, args.work)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"target": TARGET, "rows": []}
    results["rows"] = [r for r in results["rows"] if (r["dataset"], r["noise_level"]) != (args.dataset, args.level)]
    results["rows"].append(new)
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    results["note"] = "other helpers' work (tests, benchmarks) ran on the same 2 cores at the same time"
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    m = {k: (v["psnr"]["value"], v["ssim"]["value"]) for k, v in new["methods"].items()}
    scores = ", ".join(f"{k} {p:.2f} dB / {q:.3f}" for k, (p, q) in m.items())
    print(f"{args.dataset} {args.level}: {scores}; target met: {new['target_met']}")


if __name__ == "__main__":
    main()
