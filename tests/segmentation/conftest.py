"""Fixtures for segmentation tests: a few real hippocampus cases, imported small.

Fixtures:
    hippocampus_root: ``MEDLENS_DATA/Task04_Hippocampus`` (skips when missing).
    hippocampus_case: (image, label) arrays ``(X, Y, Z)`` of the first real case.
    small_msd: a Decathlon folder in ``tmp_path`` holding the first ``n`` (default 8) real cases
        (factory: ``small_msd(n=8)``), linked, not copied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def hippocampus_root(data_root: Path) -> Path:
    root = data_root / "Task04_Hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"{root} is missing from MEDLENS_DATA")
    return root


@pytest.fixture(scope="session")
def hippocampus_case(hippocampus_root: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    entry = json.loads((hippocampus_root / "dataset.json").read_text())["training"][0]
    image = np.asarray(nib.load(str(hippocampus_root / entry["image"])).dataobj)
    label = np.asarray(nib.load(str(hippocampus_root / entry["label"])).dataobj).astype(np.uint8)
    return image, label


@pytest.fixture()
def small_msd(tmp_path: Path, hippocampus_root: Path) -> Callable[..., Path]:
    """Factory: a task folder with the first ``n`` real cases (symbolic links to the real files)."""

    def make(n: int = 8, name: str = "small_task") -> Path:
        raw = json.loads((hippocampus_root / "dataset.json").read_text())
        folder = tmp_path / name
        for sub in ("imagesTr", "labelsTr"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        raw["training"] = raw["training"][:n]
        for entry in raw["training"]:
            for key in ("image", "label"):
                target = folder / entry[key]
                if not target.exists():
                    os.symlink((hippocampus_root / entry[key]).resolve(), target)
        raw["numTraining"] = n
        (folder / "dataset.json").write_text(json.dumps(raw))
        return folder

    return make


@pytest.fixture()
def mr_crop(data_root: Path, tmp_path: Path) -> Path:
    """A small real DICOM series: 24 slices of the sagittal MR series, cropped to 40 x 48 pixels.

    Rows, columns, pixel data and each slice's position are rewritten (the crop's corner moves along the
    row and column directions), and the series gets new UIDs: a consistent series, small enough for a tiny
    model's sliding window to take a moment."""
    import pydicom
    from pydicom.uid import generate_uid

    source = data_root / "dicom" / "sag_anon_mr_t1_series"
    if not source.is_dir():
        pytest.skip(f"{source} missing")
    out = tmp_path / "mr_crop"
    out.mkdir()
    r0, c0, rows, cols = 100, 96, 40, 48
    series, frame = generate_uid(), generate_uid()
    datasets = [pydicom.dcmread(p) for p in sorted(source.glob("*.dcm"))]
    datasets.sort(key=lambda d: int(d.InstanceNumber))
    for ds in datasets[80:104]:
        row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3]), np.array(ds.ImageOrientationPatient[3:])
        spacing_between_rows, spacing_between_cols = (float(v) for v in ds.PixelSpacing)
        corner = np.array(ds.ImagePositionPatient, dtype=float)
        corner += row_dir * c0 * spacing_between_cols + col_dir * r0 * spacing_between_rows
        ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
        pixels = ds.pixel_array[r0 : r0 + rows, c0 : c0 + cols].copy()
        ds.Rows, ds.Columns, ds.PixelData = rows, cols, pixels.tobytes()
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out / f"{int(ds.InstanceNumber):04d}.dcm", enforce_file_format=True)
    return out
