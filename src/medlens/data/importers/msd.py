"""Medical Segmentation Decathlon and nnU-Net raw layouts: ``dataset.json``, ``imagesTr/``, ``labelsTr/``.

Two flavours of ``dataset.json`` are read::

    MSD          {"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "Anterior", ...},
                  "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]}
                  (several channels live in one 4D file, channel last)
    nnU-Net v2   {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, ...},
                  "file_ending": ".nii.gz"}   with imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz, ... per channel

Images stay where they are (absolute paths in the manifest, as found: links are kept), and the task folder is
listed under ``image_roots``; a ``dataset.json`` entry that leads out of the task folder is refused. Every case is
read once and checked (image and mask on one grid, labels in the declared set); empty masks are reported as
warnings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medlens.core.errors import InputError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, read_text, write_dataset
from medlens.data.importers import register_importer
from medlens.data.importers.pairs import check_cases, modality_of
from medlens.data.labels import apply_label_fraction
from medlens.data.sources import absolute_path
from medlens.data.splits import assign_splits

log = logging.getLogger(__name__)


@register_importer("msd")
def import_msd(
    folder: str | Path,
    out: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
    progress: ProgressFn | None = None,
    check: bool = True,
) -> Dataset:
    """Import a Decathlon / nnU-Net raw task folder into a segmentation dataset.

    Args:
        folder: the task folder holding ``dataset.json``.
        out: the dataset folder to write.
        val_fraction: share of cases for validation (cases are patients here).
        test_fraction: share of cases held out for testing.
        seed: seed of the split.
        label_fraction: share of the training labels to keep (stratified, whole patients, seeded by ``seed``); the
            other training images stay as unlabeled cases for ``medlens pretrain`` (see :mod:`medlens.data.labels`).
        overwrite: replace an existing ``out``.
        check: read every case and check image/mask agreement (turn off only for data already checked).

    Example:
        >>> import_msd("Task04_Hippocampus", "datasets/hippocampus")  # doctest: +SKIP
    """
    folder = Path(folder)
    spec_path = folder / "dataset.json"
    if not spec_path.is_file():
        raise InputError(folder, "not a Decathlon / nnU-Net task folder (no dataset.json)")
    try:
        raw: dict[str, Any] = json.loads(read_text(spec_path))
    except json.JSONDecodeError as exc:
        raise InputError(spec_path, f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(spec_path, f"not a mapping of keys to values (it holds a {type(raw).__name__})")
    classes = _class_names(raw, spec_path)
    channels = _channel_names(raw, spec_path)
    pairs = _training_pairs(folder, raw, len(channels))
    if not pairs:
        raise InputError(folder, "dataset.json lists no training cases and imagesTr/labelsTr hold none")
    cases = [Case(cid, cid, [str(p) for p in images], str(label)) for cid, images, label in pairs]
    dims = 3 if str(raw.get("tensorImageSize", "3D")).upper() != "2D" else 2
    if check:
        dims = check_cases(cases, classes, dims, channels=len(channels), progress=progress)
    assign_splits(cases, None, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    spec = DatasetSpec(
        name=str(raw.get("name") or folder.resolve().name),
        task="segmentation",
        spatial_dims=dims,  # type: ignore[arg-type]
        modality=modality_of(channels),
        channels=channels,
        classes=classes,
        source={"format": "msd", "folder": str(folder.resolve()), "licence": str(raw.get("licence", ""))},
        image_roots=[str(absolute_path(folder))],
    )
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=[("input", folder)]) as tmp:
        write_dataset(tmp, *apply_label_fraction(spec, cases, label_fraction, seed))
    log.info("imported %d cases, classes %s, channels %s", len(cases), classes, channels)
    return load_dataset(out)


def _class_names(raw: dict[str, Any], where: Path) -> list[str]:
    labels = raw.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(where, "dataset.json has no 'labels' mapping")
    if all(str(k).isdigit() for k in labels):  # MSD: {"0": "background", ...}
        bad = [v for v in labels.values() if not isinstance(v, str)]
        if bad:
            raise InputError(where, f"labels: names must be text, not {bad[0]!r}")
        by_index = {int(k): str(v) for k, v in labels.items()}
    else:  # nnU-Net v2: {"background": 0, ...}
        try:
            by_index = {int(v): str(k) for k, v in labels.items()}
        except (TypeError, ValueError):
            raise InputError(where, "labels with region lists (nnU-Net regions) are not supported") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(where, f"label indices {sorted(by_index)} are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _channel_names(raw: dict[str, Any], where: Path) -> list[str]:
    key = "channel_names" if raw.get("channel_names") else "modality"
    names = raw.get(key) or {"0": "image"}
    if not isinstance(names, dict):
        raise InputError(where, f"{key} must map channel indices to names, not {names!r}")
    try:
        return [str(names[k]) for k in sorted(names, key=lambda k: int(k))]
    except ValueError:
        raise InputError(where, f"{key}: keys must be channel indices 0, 1, ..., not {list(names)}") from None


def _training_pairs(folder: Path, raw: dict[str, Any], n_channels: int) -> list[tuple[str, list[Path], Path]]:
    """(case id, channel files, label file) for every training case."""
    pairs = []
    training = raw.get("training")
    where = folder / "dataset.json"
    if isinstance(training, list) and training:
        for i, entry in enumerate(training):  # MSD: one (possibly 4D) file per case
            if not isinstance(entry, dict):
                raise InputError(where, f"training[{i}] is not a mapping with 'image' and 'label': {entry!r:.60}")
            missing = [k for k in ("image", "label") if not isinstance(entry.get(k), str)]
            if missing:
                raise InputError(where, f"training[{i}] lacks {' and '.join(repr(k) for k in missing)}")
            image, label = (_inside(folder, entry[k], where, f"training[{i}] {k}") for k in ("image", "label"))
            if not image.exists() and n_channels > 1:  # nnU-Net v1 lists CASE.nii.gz but stores CASE_0000...
                stem, ending = _split_ending(image.name)
                images = [image.with_name(f"{stem}_{c:04d}{ending}") for c in range(n_channels)]
            else:
                images = [image]
            pairs.append((_split_ending(label.name)[0], images, label))
        return pairs
    ending = str(raw.get("file_ending", ".nii.gz"))
    labels_dir = folder / "labelsTr"
    if not labels_dir.is_dir():
        raise InputError(folder, "no labelsTr folder")
    for label in sorted(p for p in labels_dir.iterdir() if p.name.endswith(ending) and not p.name.startswith(".")):
        case_id = label.name[: -len(ending)]
        images = [absolute_path(folder / "imagesTr" / f"{case_id}_{c:04d}{ending}") for c in range(n_channels)]
        pairs.append((case_id, images, absolute_path(label)))
    return pairs


def _inside(folder: Path, value: str, where: Path, what: str) -> Path:
    """``folder / value`` as an absolute path, refused when it leads out of ``folder``."""
    path = absolute_path(folder / value)
    if not path.is_relative_to(absolute_path(folder)):
        raise InputError(where, f"{what} {value!r} leads outside the task folder {folder}")
    return path


def _split_ending(name: str) -> tuple[str, str]:
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif"):
        if name.endswith(ending):
            return name[: -len(ending)], ending
    return name.rsplit(".", 1)[0], "." + name.rsplit(".", 1)[-1]
