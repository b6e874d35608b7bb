"""What importers need to know about source image files before reading their pixels."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from medlens.core.errors import InputError
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, write_dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".dcm",
    ".dicom",
    ".nii",
    ".nrrd",
    ".mha",
    ".npz",
    ".npy",
}


def is_image_file(path: Path) -> bool:
    """True for files whose suffix is an image format medlens reads (DICOM files may have no suffix)."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return True
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    return path.suffix == "" and _has_dicom_preamble(path)


def absolute_path(path: str | Path) -> Path:
    """The absolute form of a path as written: ``..`` resolved in the string, symbolic links kept.

    Importers write image paths in this form, and list the folders they were given in it too, so a manifest
    names the files the user pointed at (links included) and :func:`medlens.data.dataset.load_dataset` can
    check them against those folders without following links.
    """
    return Path(os.path.abspath(path))


def common_folders(paths: Iterable[Path], limit: int = 16) -> list[Path]:
    """The folders holding ``paths``, as few as ``limit``: nested folders fold into the outer one, and while there
    are too many, the deepest are replaced by their parents (one folder per patient becomes the study folder).

    Example:
        >>> common_folders([Path("/d/a/1.png"), Path("/d/a/x/2.png"), Path("/e/3.png")])
        [PosixPath('/d/a'), PosixPath('/e')]
        >>> common_folders([Path(f"/d/p{i}/1.png") for i in range(20)])
        [PosixPath('/d')]
    """
    folders = _outermost({absolute_path(p).parent for p in paths})
    while len(folders) > limit:
        deepest = max(len(f.parts) for f in folders)
        folders = _outermost({f.parent if len(f.parts) == deepest else f for f in folders})
    return folders


def _outermost(folders: set[Path]) -> list[Path]:
    """The folders that are not inside another of them, sorted (a folder's descendants sort right after it)."""
    kept: list[Path] = []
    for folder in sorted(folders, key=lambda f: f.parts):
        if not kept or not folder.is_relative_to(kept[-1]):
            kept.append(folder)
    return kept


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


#: DICOM attributes the importers keep as manifest columns, to group results by (``evaluate --by``)
CASE_ATTRIBUTES = ("PatientSex", "PatientAge", "Manufacturer")


def patient_id_of(path: Path) -> str:
    """The patient a file belongs to: DICOM PatientID when present, else the file's stem."""
    return case_facts(path)[0]


def case_facts(path: Path) -> tuple[str, dict[str, str]]:
    """The patient a file belongs to (DICOM PatientID when present, else the file's stem) and, for a DICOM file,
    the :data:`CASE_ATTRIBUTES` it has (empty ones left out)."""
    if path.suffix.lower() in {".dcm", ".dicom", ""} and path.is_file():
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", *CASE_ATTRIBUTES])
        except Exception:  # unreadable headers are reported when the pixels are read
            ds = None
        if ds is not None:
            facts = {name: str(getattr(ds, name, "") or "").strip() for name in CASE_ATTRIBUTES}
            patient = str(getattr(ds, "PatientID", "") or "").strip()
            return patient or path.name.split(".")[0], {k: v for k, v in facts.items() if v}
    return path.name.split(".")[0], {}


def describe_images(paths: list[Path]) -> tuple[int, list[str], str]:
    """Spatial dimensions, channel names and modality shared by a sample of the images (by majority)."""
    from medlens.io import read_image

    dims: Counter[int] = Counter()
    channels: Counter[int] = Counter()
    modality: Counter[str] = Counter()
    for path in paths:
        try:
            image = read_image(path).as_2d()
        except InputError:
            raise
        dims[image.spatial_dims] += 1
        channels[image.channels] += 1
        modality[str(image.meta.get("modality") or "OT")] += 1
    d = dims.most_common(1)[0][0]
    c = channels.most_common(1)[0][0]
    names = ["red", "green", "blue"] if c == 3 else ["gray"] if c == 1 else [f"channel_{i}" for i in range(c)]
    return d, names, modality.most_common(1)[0][0]


def write_picture_dataset(
    out: Path,
    cases: list[Case],
    *,
    name: str,
    task: str,
    class_names: list[str],
    source: dict[str, str],
    image_roots: Sequence[Path],
    overwrite: bool,
    inputs: Sequence[Path] = (),
    label_fraction: float = 1.0,
    label_seed: int = 0,
) -> Dataset:
    """Describe the images of imported cases (a sample), write the dataset folder atomically and load it back.

    ``label_fraction`` below 1 keeps the labels of that share of the training cases (see
    :func:`medlens.data.labels.apply_label_fraction`, seeded by ``label_seed``).

    ``image_roots`` are the folders outside the dataset that the cases' absolute image paths lie in; they and
    ``inputs`` (what the user gave the importer) are kept clear of the output folder.
    """
    from medlens.core.outputs import output_folder
    from medlens.data.labels import apply_label_fraction

    dims, channels, modality = describe_images([Path(c.image[0]) for c in cases[:: max(1, len(cases) // 20)]])
    spec = DatasetSpec(
        name=name,
        task=task,  # type: ignore[arg-type]
        spatial_dims=dims,  # type: ignore[arg-type]
        modality=modality,
        channels=channels,
        classes=class_names,
        source=source,
        image_roots=[str(absolute_path(r)) for r in image_roots],
    )
    spec, cases = apply_label_fraction(spec, cases, label_fraction, label_seed)
    guarded = [("input", p) for p in [*inputs, *image_roots]]
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=guarded) as tmp:
        write_dataset(tmp, spec, cases)
    return load_dataset(out)
