"""Image/mask pairs: ``IMAGES_DIR`` and ``MASKS_DIR`` whose files match by name.

2D pictures (PNG, TIFF, JPEG, BMP) or 3D volumes (NIfTI, NRRD, MHA, DICOM series folders).

Layouts accepted::

    IMAGES_DIR/case1.png          MASKS_DIR/case1.png        (also case1_mask.png, case1_seg.png, ...)
    IMAGES_DIR/case1.nii.gz       MASKS_DIR/case1.nii.gz
    IMAGES_DIR/case1/ (a DICOM series)   MASKS_DIR/case1.nii.gz

Classes are given (``classes=["background", "tumour"]``, mask values 0..K-1), or found from the masks:
values 0..K-1 are class indices; any other set of values (``{0, 255}`` in pictures) is mapped in order to
class indices, and the mapping is kept in ``dataset.yaml`` (``source.label_values``).

Images and masks stay where they are (absolute paths in the manifest, as found: links are kept), and both
folders are listed under ``image_roots``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, write_dataset
from medlens.data.importers import register_importer
from medlens.data.labels import apply_label_fraction
from medlens.data.segmentation_cases import read_case, read_label_map
from medlens.data.sources import absolute_path, case_facts, describe_images, is_image_file
from medlens.data.splits import assign_splits

log = logging.getLogger(__name__)
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels", "_gt", "-mask", "-seg", "-label")
CT_NAMES = {"CT"}
MR_NAMES = {"MR", "MRI", "T1", "T2", "T1W", "T2W", "FLAIR", "ADC", "DWI", "PD", "T1GD", "T1CE"}


@register_importer("pairs")
def import_pairs(
    images_dir: str | Path,
    masks_dir: str | Path,
    out: str | Path,
    *,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Import matching image and mask files into a segmentation dataset.

    Args:
        images_dir: image files (PNG, TIFF, NIfTI, NRRD, DICOM, ...) or one DICOM series folder per case.
        masks_dir: one mask per image, named like it (an optional ``_mask``/``_seg``/``_label`` suffix).
        out: the dataset folder to write.
        classes: class names, background first; found from the mask values when not given.
        val_fraction: share of patients for validation.
        test_fraction: share of patients held out for testing.
        seed: seed of the split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing ``out``.

    Example:
        >>> import_pairs("images", "masks", "datasets/polyps")  # doctest: +SKIP
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise InputError(folder, "not a folder")
    masks = {_case_key(p): p for p in _entries(masks_dir) if p.is_file()}
    cases: list[Case] = []
    unmatched: list[str] = []
    for entry in _entries(images_dir):
        key = _case_key(entry)
        mask = masks.pop(key, None)
        if mask is None:
            unmatched.append(entry.name)
            continue
        patient, facts = case_facts(_first_file(entry))  # DICOM: PatientID, PatientSex, PatientAge, Manufacturer
        cases.append(Case(key, patient, [str(absolute_path(entry))], str(absolute_path(mask)), extra=facts))
    if unmatched:
        raise InputError(
            images_dir, f"no mask in {masks_dir} for {len(unmatched)} image(s): {', '.join(unmatched[:5])}"
        )
    if masks:
        log.warning("%d mask(s) without an image ignored: %s", len(masks), ", ".join(sorted(masks)[:5]))
    if not cases:
        raise InputError(images_dir, "no image files found")
    dims, channel_names, modality = describe_images([Path(c.image[0]) for c in cases[:: max(1, len(cases) // 20)]])
    class_names, label_values = _classes(cases, dims, classes)
    check_cases(cases, class_names, dims, label_values, channels=len(channel_names), progress=progress)
    assign_splits(cases, None, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    source = {"format": "pairs", "images": str(images_dir.resolve()), "masks": str(masks_dir.resolve())}
    if label_values is not None:
        source["label_values"] = ",".join(str(v) for v in label_values)
    spec = DatasetSpec(
        name=images_dir.resolve().parent.name or images_dir.resolve().name,
        task="segmentation",
        spatial_dims=dims,  # type: ignore[arg-type]
        modality=modality,
        channels=channel_names,
        classes=class_names,
        source=source,
        image_roots=list(dict.fromkeys(str(absolute_path(f)) for f in (images_dir, masks_dir))),
    )
    inputs = [("images", images_dir), ("masks", masks_dir)]
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=inputs) as tmp:
        write_dataset(tmp, *apply_label_fraction(spec, cases, label_fraction, seed))
    log.info("imported %d %dD cases, classes %s", len(cases), dims, class_names)
    return load_dataset(out)


def check_cases(
    cases: list[Case],
    classes: Sequence[str],
    dims: int,
    label_values: Sequence[int] | None = None,
    channels: int | None = None,
    progress: ProgressFn | None = None,
) -> int:
    """Read every case and check it; warn (naming them) about cases whose mask is empty. Returns ``dims``.

    Raises:
        InputError: a missing file, image and mask on different grids, labels outside the declared set, an image
            with another number of ``channels`` than the dataset declares.
    """
    empty = []
    for case in tracked(cases, progress, "checking cases"):
        image, mask = read_case(
            [Path(p) for p in case.image], Path(case.target), dims, len(classes), case.case_id, label_values
        )
        if channels is not None and image.channels != channels:
            raise InputError(
                case.image[0], f"case {case.case_id}: {image.channels} channel(s); the dataset has {channels}"
            )
        if not mask.array.any():
            empty.append(case.case_id)
    if empty:
        log.warning("%d case(s) with an empty mask (background only): %s", len(empty), ", ".join(empty[:10]))
    return dims


def modality_of(channel_names: Sequence[str]) -> str:
    """DICOM-style modality from channel names: CT, MR, else OT."""
    upper = {n.upper() for n in channel_names}
    if upper & CT_NAMES:
        return "CT"
    if upper & MR_NAMES or any(n.startswith(("MR", "T1", "T2")) for n in upper):
        return "MR"
    return "OT"


def _classes(cases: list[Case], dims: int, given: Sequence[str] | None) -> tuple[list[str], list[int] | None]:
    if given:
        return list(given), None
    values: set[int] = set()
    for case in cases:
        mask = read_label_map(Path(case.target), dims, 256, case.case_id, label_values=range(256))
        values.update(int(v) for v in np.unique(mask.array))
    found = sorted(values | {0})
    if len(found) < 2:
        raise InputError(Path(cases[0].target).parent, "every mask is empty: no foreground class to learn")
    names = ["background"] + (["foreground"] if len(found) == 2 else [f"class_{v}" for v in found[1:]])
    if found == list(range(len(found))):
        return names, None
    log.info("mask values %s mapped to class indices 0..%d", found, len(found) - 1)
    return names, found


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p.is_dir() or is_image_file(p)))


def _case_key(path: Path) -> str:
    stem = path.name
    for ending in (
        ".nii.gz",
        ".nii",
        ".nrrd",
        ".mha",
        ".png",
        ".tif",
        ".tiff",
        ".gif",
        ".jpg",
        ".jpeg",
        ".dcm",
        ".bmp",
    ):
        if stem.lower().endswith(ending):
            stem = stem[: -len(ending)]
            break
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _first_file(entry: Path) -> Path:
    if entry.is_file():
        return entry
    files = sorted(p for p in entry.rglob("*") if p.is_file())
    return files[0] if files else entry
