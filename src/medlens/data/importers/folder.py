"""A folder with one subfolder per class (PNG, JPEG, TIFF, DICOM, NIfTI), optionally under split folders.

Layouts accepted::

    DIR/normal/*.png  DIR/pneumonia/*.png                 -> split by patient, stratified, seeded
    DIR/train/normal/*.png  DIR/val/...  DIR/test/...     -> the given splits are kept

Images stay where they are; the manifest refers to them by absolute path (as found, links kept), and
``dataset.yaml`` lists ``DIR`` under ``image_roots``. DICOM files give their PatientID as the patient (else the
file name does) and their PatientSex, PatientAge and Manufacturer as manifest columns, to group results by.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medlens.core.errors import InputError
from medlens.data.dataset import SPLITS, Case, Dataset
from medlens.data.importers import register_importer
from medlens.data.sources import absolute_path, case_facts, is_image_file, write_picture_dataset
from medlens.data.splits import assign_splits

log = logging.getLogger(__name__)


@register_importer("folder")
def import_folder(
    folder: str | Path,
    out: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
    label_fraction: float = 1.0,
) -> Dataset:
    """Import a folder of class subfolders into a classification dataset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    has_splits = bool(subdirs) and {p.name for p in subdirs} <= set(SPLITS) and "train" in {p.name for p in subdirs}
    roots = [(p.name, p) for p in subdirs] if has_splits else [("", folder)]
    class_names = sorted({c.name for _, r in roots for c in r.iterdir() if c.is_dir() and not c.name.startswith(".")})
    if len(class_names) < 2:
        raise InputError(folder, f"needs at least two class subfolders, found {class_names or 'none'}")
    cases: list[Case] = []
    for split, root in roots:
        for index, name in enumerate(class_names):
            class_dir = root / name
            files = (
                sorted(
                    p
                    for p in class_dir.rglob("*")
                    if p.is_file()
                    and is_image_file(p)
                    and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
                )
                if class_dir.is_dir()
                else []
            )
            for path in files:
                case_id = f"{split + '/' if split else ''}{name}/{path.relative_to(class_dir)}"
                patient, facts = case_facts(path)
                cases.append(Case(case_id, patient, [str(absolute_path(path))], str(index), split, facts))
    if not cases:
        raise InputError(folder, "no image files found in the class subfolders")
    counts = {n: sum(c.target == str(i) for c in cases) for i, n in enumerate(class_names)}
    empty = [n for n, k in counts.items() if k == 0]
    if empty:
        raise InputError(folder, f"class folder(s) without images: {', '.join(empty)}")
    assign_splits(cases, [c.target for c in cases], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    dataset = write_picture_dataset(
        Path(out),
        cases,
        name=folder.resolve().name,
        task="classification",
        class_names=class_names,
        source={"format": "folder", "folder": str(folder.resolve())},
        image_roots=[folder],
        overwrite=overwrite,
        label_fraction=label_fraction,
        label_seed=seed,
        inputs=[folder],
    )
    log.info("imported %d cases in %d classes (%s)", len(cases), len(class_names), counts)
    return dataset
