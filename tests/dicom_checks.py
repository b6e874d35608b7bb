"""Checks of DICOM objects medlens writes (imported by tests as ``from dicom_checks import ...``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom


def dciodvfy_errors(dciodvfy: str, path: Path) -> list[str]:
    """The error lines dciodvfy prints for ``path`` (warnings are not errors)."""
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def voxel_ml_from_headers(files: list[Path]) -> float:
    """The voxel volume of a series in mL from its headers alone: pixel spacing times the step between slices."""
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted(float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float))) for ds in datasets)
    step = float(np.median(np.diff(positions)))
    rows, cols = (float(v) for v in datasets[0].PixelSpacing)
    return rows * cols * step / 1000


def seg_voxels(seg: pydicom.Dataset, number: int) -> int:
    """Pixels of one segment over a binary SEG's frames (read from the SEG itself)."""
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    ids = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in seg.PerFrameFunctionalGroupsSequence]
    return int(sum(int(frame.sum()) for frame, k in zip(frames, ids, strict=True) if k == number))
