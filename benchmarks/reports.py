"""Reports check: DICOM SR volumes of held-out Hippocampus cases, and the validity of the SR and SEG medlens writes.

Trains (or reuses) a Hippocampus model on the seeded split of the segmentation benchmark (about 162 training, 18
validation and 40 held-out cases, ``--seed 0``, the default plan), then writes each held-out case as a DICOM MR
series (``write_dicom_series``) and runs ``medlens predict RUN SERIES... --dicom-sr`` on them. Per case:

- the SR's volume of each structure (read back with highdicom) against the predicted mask's voxel count times the
  voxel volume taken from the DICOM headers alone (pixel spacing times the step between slice positions): the
  relative difference, which must stay under 1%;
- that each volume references the SEG's SOP instance, the segment of its class and the source series;
- ``dciodvfy`` on the SR and on the SEG: error and warning lines (no error allowed);
- for information, the predicted volume against the case's labelled volume.

Writes benchmarks/results/reports.json.

    .venv/bin/python benchmarks/reports.py                   # train 5 minutes (default plan), then check
    .venv/bin/python benchmarks/reports.py --reuse           # check the run already trained in --work
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import split_sizes

ROOT = Path(__file__).resolve().parent
N_CASES, N_TEST, N_VAL = 220, 40, 18
TARGET = "SR volume within 1% of mask voxels x voxel volume for every structure of every case; dciodvfy: no errors"


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def dciodvfy(path: Path) -> dict[str, Any]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return {"errors": len(errors), "warnings": len(warnings), "error_lines": errors}


def voxel_ml_from_headers(files: list[Path]) -> float:
    """The voxel volume in mL from the series' headers alone: pixel spacing times the step between slices."""
    import numpy as np
    import pydicom

    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted(float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float))) for ds in datasets)
    rows, cols = (float(v) for v in datasets[0].PixelSpacing)
    return rows * cols * float(np.median(np.diff(positions))) / 1000


def check_case(case_id: str, series: Path, out: Path, label_path: Path, names: list[str]) -> dict[str, Any]:
    import highdicom as hd
    import nibabel as nib
    import numpy as np
    import pydicom
    from pydicom.sr.codedict import codes

    sr_path, seg_path = out / "reports" / f"{case_id}.sr.dcm", out / f"{case_id}_seg.dcm"
    sr, seg = hd.sr.srread(sr_path), pydicom.dcmread(seg_path, stop_before_pixels=True)
    files = sorted(series.iterdir())
    source_series = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    mask = np.asarray(nib.load(str(out / f"{case_id}_mask.nii.gz")).dataobj)
    label = nib.load(str(label_path))
    truth = np.asarray(label.dataobj)
    truth_voxel_ml = float(np.prod(label.header.get_zooms()[:3])) / 1000
    voxel_ml = voxel_ml_from_headers(files)
    structures = []
    for group in sr.content.get_volumetric_roi_measurement_groups():
        name = str(group.tracking_identifier)
        k = names.index(name)
        segment = group.referenced_segment
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        expected = int((mask == k).sum()) * voxel_ml
        structures.append(
            {
                "structure": name,
                "sr_volume_ml": float(volume.value),
                "mask_voxels_x_voxel_ml": round(expected, 6),
                "relative_difference": abs(float(volume.value) - expected) / expected if expected else None,
                "references_seg_segment": segment.referenced_sop_instance_uid == seg.SOPInstanceUID
                and segment.referenced_segment_numbers == [k],
                "references_source_series": segment.source_series_for_segmentation.value == source_series,
                "labelled_volume_ml": round(int((truth == k).sum()) * truth_voxel_ml, 6),
            }
        )
    return {"case": case_id, "structures": structures, "dciodvfy_sr": dciodvfy(sr_path),
            "dciodvfy_seg": dciodvfy(seg_path)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="5m", help="training budget (e.g. 5m)")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "reports")
    parser.add_argument("--cases", type=int, default=N_TEST, help="held-out cases to check")
    parser.add_argument("--reuse", action="store_true", help="check the run already trained in --work")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reports.json")
    args = parser.parse_args()
    data = os.environ.get("MEDLENS_DATA")
    if not data:
        sys.exit("MEDLENS_DATA is not set (make bench sets it to ../shared/data)")
    if shutil.which("dciodvfy") is None:
        sys.exit("dciodvfy is not installed (Debian dicom3tools; make system-packages)")
    medlens = str(Path(sys.executable).with_name("medlens"))
    work = args.work
    dataset, run_dir = work / "dataset", work / "run"
    train_wall = None
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
        fractions = ["--test-fraction", str(N_TEST / N_CASES), "--val-fraction", str(N_VAL / N_CASES), "--seed", "0"]
        run([medlens, "-q", "import", "msd", str(Path(data) / "Task04_Hippocampus"), "--out", str(dataset), *fractions])
        run([medlens, "-q", "plan", str(dataset)])
        train_wall = run([medlens, "-q", "train", str(dataset), "--out", str(run_dir), "--budget", args.budget])
    elif not (run_dir / "bundle").is_dir():
        sys.exit(f"{run_dir}: no trained run to reuse")

    from medlens.data.dataset import load_dataset
    from medlens.io import read_image
    from medlens.io.dicom_series_writer import write_dicom_series
    from medlens.tasks.base import load_bundle

    data_set = load_dataset(dataset)
    cases = data_set.split("test")[: args.cases]
    series_root, out = work / "series", work / "predictions"
    shutil.rmtree(series_root, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    for case in cases:
        write_dicom_series(read_image(data_set.image_paths(case)[0]), series_root / case.case_id)
    predict_seconds = run(
        [medlens, "-q", "predict", str(run_dir), *[str(series_root / c.case_id) for c in cases], "--out", str(out),
         "--dicom-sr", "--no-pictures"]
    )  # fmt: skip
    names = load_bundle(run_dir).class_names
    rows = [
        check_case(c.case_id, series_root / c.case_id, out, data_set.root / c.target, names) for c in cases
    ]  # fmt: skip
    structures = [s for r in rows for s in r["structures"]]
    differences = [s["relative_difference"] for s in structures if s["relative_difference"] is not None]
    errors_vs_label = [
        abs(s["sr_volume_ml"] - s["labelled_volume_ml"]) / s["labelled_volume_ml"]
        for s in structures
        if s["labelled_volume_ml"]
    ]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    result = {
        "benchmark": "reports_hippocampus_dicom_sr",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        },
        "run": "trained now" if train_wall is not None else "reused",
        "budget": args.budget,
        "train_wall_seconds": None if train_wall is None else round(train_wall, 1),
        "epochs": [s["epochs"] for s in summary["member_summaries"]],
        "val_dice": summary["val_monitor_mean"],
        "split": split_sizes(dataset),
        "cases": len(rows),
        "structures_checked": len(structures),
        "max_relative_volume_difference": max(differences),
        "mean_relative_volume_difference": statistics.fmean(differences),
        "all_within_1_percent": all(d < 0.01 for d in differences) and len(differences) == len(structures),
        "all_reference_seg_and_series": all(
            s["references_seg_segment"] and s["references_source_series"] for s in structures
        ),
        "dciodvfy_sr_errors": sum(r["dciodvfy_sr"]["errors"] for r in rows),
        "dciodvfy_seg_errors": sum(r["dciodvfy_seg"]["errors"] for r in rows),
        "dciodvfy_sr_warnings_per_file": statistics.fmean(r["dciodvfy_sr"]["warnings"] for r in rows),
        "dciodvfy_seg_warnings_per_file": statistics.fmean(r["dciodvfy_seg"]["warnings"] for r in rows),
        "predict_seconds_per_case": round(predict_seconds / len(rows), 3),
        "mean_abs_relative_error_vs_label": statistics.fmean(errors_vs_label),
        "per_case": rows,
        "target": TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_case"}, indent=2))
    return 0 if result["all_within_1_percent"] and not result["dciodvfy_sr_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
