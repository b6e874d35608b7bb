"""MedMNIST ``.npz`` archives (v2 and v3/MedMNIST+, 2D and 3D, every size, multi-label ChestMNIST).

The archive holds ``{train,val,test}_images`` and ``{train,val,test}_labels``; labels come shaped (N,) or
(N, 1) for single-label tasks and (N, L) for multi-label ones. Images are written one file per case (PNG in
2D, NIfTI in 3D) so the dataset is like any other; the official splits are kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import urllib.request
import zipfile
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn, report
from medlens.data.dataset import SPLITS, Case, Dataset, DatasetSpec, write_dataset
from medlens.data.importers import register_importer
from medlens.data.labels import apply_label_fraction

log = logging.getLogger(__name__)
_CATALOG = Path(__file__).with_name("medmnist_catalog.yaml")
# DICOM modality of each MedMNIST source, from the MedMNIST v2 paper's dataset descriptions.
_MODALITY = {
    "chestmnist": "DX",
    "pneumoniamnist": "DX",
    "breastmnist": "US",
    "dermamnist": "XC",
    "retinamnist": "OP",
    "octmnist": "OPT",
    "pathmnist": "SM",
    "bloodmnist": "SM",
    "tissuemnist": "SM",
    "organamnist": "CT",
    "organcmnist": "CT",
    "organsmnist": "CT",
    "organmnist3d": "CT",
    "nodulemnist3d": "CT",
    "adrenalmnist3d": "CT",
    "fracturemnist3d": "CT",
    "vesselmnist3d": "MR",
    "synapsemnist3d": "OT",
}


@cache
def catalog() -> dict[str, Any]:
    """The official MedMNIST catalog: labels, task, URLs and MD5s per size."""
    return dict(yaml.safe_load(_CATALOG.read_text()))


def parse_name(path: Path) -> tuple[str | None, int]:
    """``pneumoniamnist_64.npz`` -> (``pneumoniamnist``, 64); unknown names give (None, size)."""
    match = re.fullmatch(r"([a-z0-9]+?)(?:_(\d+))?", path.name.removesuffix(".npz").lower())
    if not match:
        return None, 28
    name, size = match.group(1), int(match.group(2) or 28)
    return (name if name in catalog() else None), size


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_medmnist(name: str, size: int = 28, root: str | Path | None = None, url: str | None = None) -> Path:
    """Download an official MedMNIST archive (once) and check its MD5.

    Args:
        name: catalog name such as ``pneumoniamnist``.
        size: image size (28, 64, 128 or 224; 3D sets have 28 and 64).
        root: download folder (default: the medlens cache).
        url: override the catalog URL (a mirror, or a ``file://`` URL for offline use).

    Returns:
        The path of the verified archive.
    """
    from medlens.core.settings import get_settings

    entry = catalog().get(name)
    if entry is None or size not in entry["files"]:
        raise InputError(Path(f"{name}_{size}.npz"), f"not in the MedMNIST catalog ({', '.join(sorted(catalog()))})")
    spec = entry["files"][size]
    root = Path(root) if root else get_settings().cache_dir / "medmnist"
    target = root / (f"{name}.npz" if size == 28 else f"{name}_{size}.npz")
    if target.is_file() and md5sum(target) == spec["md5"]:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, suffix=".partial", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        log.info("downloading %s", url or spec["url"])
        with urllib.request.urlopen(url or spec["url"]) as response, open(tmp_path, "wb") as out:
            shutil.copyfileobj(response, out)
        got = md5sum(tmp_path)
        if got != spec["md5"]:
            raise InputError(target, f"download MD5 {got} differs from the official {spec['md5']}")
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)
    return target


@register_importer("medmnist")
def import_medmnist(
    path: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    label_fraction: float = 1.0,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Import a MedMNIST ``.npz`` archive into a dataset folder.

    ``label_fraction`` below 1 keeps the labels of that share of the training images (stratified by class, seeded
    by ``seed``; MedMNIST has one image per patient); the other training images stay as unlabeled cases for
    ``medlens pretrain`` (see :mod:`medlens.data.labels`). Validation and test are the official ones, untouched.

    Example:
        >>> import_medmnist("pneumoniamnist.npz", "datasets/pneumonia")  # doctest: +SKIP
    """
    path = Path(path)
    arrays = _load_npz(path)
    name, size = parse_name(path)
    info = catalog().get(name, {}) if name else {}
    first = arrays["train_images"]
    spatial_dims: Literal[2, 3] = 3 if (first.ndim == 4 and first.shape[-1] not in (3,)) or first.ndim == 5 else 2
    if name and info.get("spatial_dims") and info["spatial_dims"] != spatial_dims:
        raise InputError(path, f"images shaped {first.shape[1:]} but {name} is {info['spatial_dims']}D")
    for split in SPLITS if spatial_dims == 2 else ():
        images = arrays[f"{split}_images"]  # written as PNG: 8-bit, or 16-bit grey
        if not (images.dtype == np.uint8 or (images.dtype == np.uint16 and images.ndim == 3)):
            raise InputError(path, f"{split}_images hold {images.dtype} pixels; 2D MedMNIST images are uint8")
    labels = {s: _labels(path, arrays, s) for s in SPLITS}
    multilabel = labels["train"].shape[1] > 1
    n_labels = labels["train"].shape[1] if multilabel else max(int(v.max()) for v in labels.values() if v.size) + 1
    class_names = [str(v) for v in info.get("labels", [])] or [f"class_{i}" for i in range(n_labels)]
    if len(class_names) < n_labels:
        raise InputError(path, f"labels go up to {n_labels - 1} but {name} has {len(class_names)} classes")
    if multilabel and len(class_names) != n_labels:
        raise InputError(path, f"labels have {n_labels} columns but {name} has {len(class_names)} labels")
    channels = ["red", "green", "blue"] if (spatial_dims == 2 and first.ndim == 4) else ["gray"]
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=[("input", path)]) as tmp:
        (tmp / "images").mkdir()
        cases: list[Case] = []
        total = sum(len(arrays[f"{split}_images"]) for split in SPLITS)
        for split in SPLITS:
            images = arrays[f"{split}_images"]
            for i, (image, label) in enumerate(zip(images, labels[split], strict=True)):
                report(progress, "writing images", len(cases), total)
                case_id = f"{split}_{i:05d}"
                rel = _write_case(tmp / "images", case_id, image, spatial_dims)
                target = ";".join(str(int(v)) for v in label) if multilabel else str(int(label[0]))
                cases.append(Case(case_id=case_id, patient_id=case_id, image=[rel], target=target, split=split))
        spec = DatasetSpec(
            name=f"{name}_{size}" if name and size != 28 else (name or path.stem),
            task="multilabel" if multilabel else "classification",
            spatial_dims=spatial_dims,
            modality=_MODALITY.get(name or "", "OT"),
            channels=channels,
            classes=class_names,  # all catalog classes, even those absent from this archive
            source={"format": "medmnist", "file": str(path.resolve()), "md5": md5sum(path)},
        )
        write_dataset(tmp, *apply_label_fraction(spec, cases, label_fraction, seed))
    log.info("imported %d cases (%s) into %s", len(cases), spec.task, out)
    from medlens.data.dataset import load_dataset

    return load_dataset(out)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(path, f"not a readable .npz archive ({exc})") from None
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise InputError(path, f"not a MedMNIST archive: missing {', '.join(missing)}")
    for split in SPLITS:
        images = arrays[f"{split}_images"]
        if images.ndim not in (3, 4, 5):
            raise InputError(path, f"{split}_images shaped {images.shape}: not (N, H, W[, C]) or (N, D, H, W[, C])")
        if images.dtype.kind not in "buif":
            raise InputError(path, f"{split}_images hold {images.dtype} values, not numbers")
        if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
            raise InputError(path, f"{split}_images hold NaN or infinite values")
    if not len(arrays["train_images"]):
        raise InputError(path, "train_images is empty")
    return arrays


def _labels(path: Path, arrays: dict[str, np.ndarray], split: str) -> np.ndarray:
    labels = arrays[f"{split}_labels"]
    if labels.ndim == 1:
        labels = labels[:, None]  # (N,) -> (N, 1)
    if labels.ndim != 2 or len(labels) != len(arrays[f"{split}_images"]):
        raise InputError(path, f"{split}_labels shaped {labels.shape} does not match {split}_images")
    if labels.dtype.kind not in "buif" or (labels.dtype.kind == "f" and not np.all(np.isfinite(labels))):
        raise InputError(path, f"{split}_labels are not all numbers (dtype {labels.dtype}, or NaN)")
    if labels.dtype.kind == "f" and np.any(labels != np.round(labels)):
        raise InputError(path, f"{split}_labels hold fractions; labels are class indices")
    if labels.size and labels.min() < 0:
        raise InputError(path, f"{split}_labels has negative values")
    return labels.astype(np.int64)


def _write_case(folder: Path, case_id: str, image: np.ndarray, spatial_dims: int) -> str:
    if spatial_dims == 2:
        from PIL import Image as PILImage

        PILImage.fromarray(image).save(folder / f"{case_id}.png")
        return f"images/{case_id}.png"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ascontiguousarray(image), np.eye(4)), str(folder / f"{case_id}.nii.gz"))
    return f"images/{case_id}.nii.gz"
