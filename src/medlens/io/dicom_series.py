"""Finding DICOM series in a folder, a list of files or a DICOMDIR, and reading one as a volume.

Files are grouped by SeriesInstanceUID, then split further by orientation, image size and pixel spacing
when one UID hides several stacks (localizers, reformats). Each multi-frame file is a series of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io.dicom_geometry import slice_normal
from medlens.io.dicom_tags import DICOMDIR_SOP_CLASS, has_dicom_preamble, has_pixels, open_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesInfo:
    """One stack of images found among DICOM files.

    Attributes:
        key: what to pass as ``series_uid=`` (or ``--series``) to read it: the SeriesInstanceUID, with
            ``#2``, ``#3``... appended when one UID holds several stacks.
        series_uid: the SeriesInstanceUID.
        series_number: SeriesNumber, when present.
        modality: Modality (CT, MR, ...).
        description: SeriesDescription.
        rows: image rows.
        columns: image columns.
        plane: "axial", "coronal", "sagittal", "oblique", or "" without orientation.
        frames: number of images (files, or frames of a multi-frame file).
        files: the files, in no particular order.
    """

    key: str
    series_uid: str
    series_number: int | None
    modality: str
    description: str
    rows: int
    columns: int
    plane: str
    frames: int
    files: tuple[Path, ...] = field(repr=False)

    def summary(self) -> str:
        """One line naming the series, for messages."""
        text = f"{self.key} ({self.modality} {self.description or 'no description'}, {self.frames} images"
        return text + (f", {self.plane}" if self.plane else "") + ")"


def _plane(orientation: Sequence[float] | None) -> str:
    if orientation is None:
        return ""
    normal = np.abs(slice_normal(np.asarray([float(v) for v in orientation])))
    axis = int(np.argmax(normal))
    if normal[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def files_from_dicomdir(path: Path) -> list[Path]:
    """The image files a DICOMDIR references, resolved against its folder."""
    from pydicom.fileset import FileSet

    ds = open_dataset(path, stop_before_pixels=True)
    try:
        fileset = FileSet(ds)
        files = [Path(instance.path) for instance in fileset]
    except (ValueError, KeyError, AttributeError, NotImplementedError) as exc:
        raise InputError(path, f"cannot read the DICOMDIR records: {exc}") from exc
    if not files:
        raise InputError(path, "DICOMDIR references no files")
    return files


def _candidate_files(source: Path | Sequence[Path]) -> list[Path]:
    if not isinstance(source, Path):
        return [Path(p) for p in source]
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    return files_from_dicomdir(source)


def _scan(source: Path | Sequence[Path]) -> tuple[list[SeriesInfo], list[str]]:
    """Read headers and group them; return the series and the files skipped, with reasons."""
    groups: dict[tuple, list[tuple[Path, Dataset]]] = {}
    skipped: list[str] = []
    for path in _candidate_files(source):
        if not path.exists():
            raise InputError(path, "file does not exist")
        try:
            ds = open_dataset(path, stop_before_pixels=True)
        except InputError:
            if has_dicom_preamble(path):
                raise  # it says it is DICOM but cannot be read: corrupt, not silently skipped
            skipped.append(f"{path.name}: not DICOM")
            continue
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if "SOPClassUID" not in ds and sop_class != DICOMDIR_SOP_CLASS:
            # pydicom stops quietly where a file ends; a Part 10 file without SOPClassUID was cut short.
            raise InputError(path, "DICOM header incomplete (no SOPClassUID): truncated or corrupt file")
        if sop_class == DICOMDIR_SOP_CLASS or path.name.upper() == "DICOMDIR":
            skipped.append(f"{path.name}: DICOMDIR index")
            continue
        if ds.get("Rows") is None and "Image Storage" in ds.SOPClassUID.name:
            raise InputError(path, f"{ds.SOPClassUID.name} without Rows: header truncated or corrupt")
        if ds.get("Rows") is None and not has_pixels(ds):  # headers only: Rows tells an image
            skipped.append(f"{path.name}: no pixel data ({ds.get('Modality', '?')})")
            continue
        iop = ds.get("ImageOrientationPatient")
        orientation = tuple(round(float(v), 3) for v in iop) if iop else None
        spacing = tuple(round(float(v), 4) for v in ds.get("PixelSpacing") or ())
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        own = str(ds.get("SOPInstanceUID", path)) if frames > 1 else ""
        uid = str(ds.get("SeriesInstanceUID", "") or f"no-uid:{path.parent}")
        key = (uid, own, orientation, int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), spacing)
        groups.setdefault(key, []).append((path, ds))

    by_uid: dict[str, list[tuple]] = {}
    for key in groups:
        by_uid.setdefault(key[0], []).append(key)
    series: list[SeriesInfo] = []
    for uid, keys in by_uid.items():
        # The biggest stack first (usually the one wanted), then a fixed order whatever the file order.
        keys.sort(key=lambda k: (-len(groups[k]), repr(k[1:])))
        for number, key in enumerate(keys, start=1):
            members = groups[key]
            ds = members[0][1]
            number_value = ds.get("SeriesNumber")
            series.append(
                SeriesInfo(
                    key=uid if len(keys) == 1 else f"{uid}#{number}",
                    series_uid=uid,
                    series_number=int(number_value) if number_value not in (None, "") else None,
                    modality=str(ds.get("Modality", "")),
                    description=str(ds.get("SeriesDescription", "")),
                    rows=key[3],
                    columns=key[4],
                    plane=_plane(key[2]),
                    frames=sum(int(d.get("NumberOfFrames", 1) or 1) for _, d in members),
                    files=tuple(p for p, _ in members),
                )
            )
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.key))
    return series, skipped


def find_series(source: str | Path | Sequence[str | Path]) -> list[SeriesInfo]:
    """List the image series in a folder (searched recursively), a DICOMDIR, or a list of files.

    Non-DICOM files and DICOM objects without pixels (RTSTRUCT, SR, DICOMDIR) are ignored; a file that
    claims to be DICOM but cannot be read raises :class:`InputError`.

    Example:
        >>> from medlens.io import find_series
        >>> for s in find_series("study/"):  # doctest: +SKIP
        ...     print(s.summary())
    """
    src = Path(source) if isinstance(source, str | Path) else [Path(p) for p in source]
    return _scan(src)[0]


def select_series(series: list[SeriesInfo], source: Path | str, series_uid: str | None) -> SeriesInfo:
    """Pick one series by key or UID, or the only one; otherwise raise an error naming them all."""
    if not series:
        raise InputError(source, "no DICOM images found")
    names = "; ".join(s.summary() for s in series)
    if series_uid is None:
        if len(series) == 1:
            return series[0]
        raise InputError(source, f"holds {len(series)} series, choose one with series_uid= (CLI: --series): {names}")
    exact = [s for s in series if s.key == series_uid]
    if exact:
        return exact[0]
    by_uid = [s for s in series if s.series_uid == series_uid]
    if len(by_uid) == 1:
        return by_uid[0]
    if by_uid:
        parts = "; ".join(s.summary() for s in by_uid)
        raise InputError(source, f"series {series_uid} holds {len(by_uid)} stacks, choose one key: {parts}")
    raise InputError(source, f"no series {series_uid}; found: {names}")


def read_dicom_series(source: str | Path | Sequence[str | Path], series_uid: str | None = None) -> Image:
    """Read one series from a folder, a DICOMDIR or a list of files as a volume.

    Args:
        source: the folder, DICOMDIR file, or files.
        series_uid: which series, when there are several (a :attr:`SeriesInfo.key` or SeriesInstanceUID).

    Raises:
        InputError: no images, several series and none chosen, or a file that cannot be read.
    """
    from medlens.io.dicom_file import check_has_pixels, read_dicom_file
    from medlens.io.dicom_stack import volume_from_slices

    src = Path(source) if isinstance(source, str | Path) else [Path(p) for p in source]
    name = src if isinstance(src, Path) else (src[0].parent if src else Path("."))
    series, skipped = _scan(src)
    chosen = select_series(series, name, series_uid)
    if skipped:
        logger.debug("%s: skipped %d file(s): %s", name, len(skipped), ", ".join(skipped[:5]))
    if len(chosen.files) == 1:  # a multi-frame file, or one slice or picture
        image = read_dicom_file(chosen.files[0])
    else:
        datasets = [open_dataset(p) for p in chosen.files]
        for ds, path in zip(datasets, chosen.files, strict=True):
            check_has_pixels(ds, path)
        image = volume_from_slices(datasets, list(chosen.files))
    image.meta["series_key"] = chosen.key
    image.meta["source_files"] = [str(p) for p in chosen.files]
    if skipped:
        image.meta["skipped_files"] = skipped
    return image
