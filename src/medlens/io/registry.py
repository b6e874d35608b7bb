"""Readers looked up by format name, and :func:`read_image`, the one entry point for every format.

A decorator fills the registry (as timm's model registry does); :func:`detect_format` names the reader
for a path from its kind (folder, list, DICOMDIR), its suffix, or the DICOM magic bytes.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medlens.core.errors import InputError
from medlens.core.image import Image

logger = logging.getLogger(__name__)

ReaderFn = Callable[..., Image]


@dataclass(frozen=True)
class ReaderEntry:
    """A registered reader: its name, the suffixes it claims, what it reads, and the function."""

    name: str
    suffixes: tuple[str, ...]
    description: str
    fn: ReaderFn
    takes_kind: bool = False  # reads labels differently (pictures: palette indices); gets read_image's kind


_READERS: dict[str, ReaderEntry] = {}


def register_reader(name: str, suffixes: Sequence[str] = (), description: str = "") -> Callable[[ReaderFn], ReaderFn]:
    """Register ``fn(source, **options) -> Image`` under ``name`` for the given lower-case suffixes."""

    def decorate(fn: ReaderFn) -> ReaderFn:
        summary = description or (fn.__doc__ or "").split("\n")[0]
        takes_kind = "kind" in inspect.signature(fn).parameters
        _READERS[name] = ReaderEntry(name, tuple(suffixes), summary, fn, takes_kind)
        return fn

    return decorate


def list_readers() -> list[str]:
    """Names of the registered readers."""
    _load_builtin()
    return sorted(_READERS)


def get_reader(name: str) -> ReaderEntry:
    """The reader registered as ``name``."""
    _load_builtin()
    if name not in _READERS:
        raise KeyError(f"unknown image format {name!r}; known: {', '.join(sorted(_READERS))}")
    return _READERS[name]


def _load_builtin() -> None:
    # An explicit list, not a walk over the package (STYLE.md item 1).
    import medlens.io.builtin_readers  # noqa: F401


def _suffix_of(path: Path) -> str:
    name = path.name.lower()
    for double in (".nii.gz", ".dcm.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def detect_format(source: Path | Sequence[Path]) -> str:
    """Name the reader for a path or list of paths.

    Raises:
        InputError: the path does not exist or its format is unknown.
    """
    _load_builtin()
    if not isinstance(source, Path):
        return "dicom-series"
    try:
        exists = source.exists()
    except OSError as exc:  # a name the file system cannot hold (too long, ...)
        raise InputError(source, f"cannot be read ({exc.strerror})") from None
    if not exists:
        raise InputError(source, "does not exist")
    if source.is_dir():
        return "dicom-series"
    if source.name.upper() == "DICOMDIR":
        return "dicomdir"
    suffix = _suffix_of(source)
    for entry in _READERS.values():
        if suffix and suffix in entry.suffixes:
            return entry.name
    from medlens.io.dicom_tags import has_dicom_preamble

    if has_dicom_preamble(source):
        return "dicom"
    known = sorted({s for e in _READERS.values() for s in e.suffixes})
    raise InputError(source, f"unknown image format (not DICOM; known suffixes: {' '.join(known)})")


def read_image(
    source: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    kind: Literal["scalar", "label"] | None = None,
    format: str | None = None,
    **options: Any,
) -> Image:
    """Read any supported image into a channel-first :class:`Image` with its RAS+ affine.

    Args:
        source: a file (DICOM, NIfTI, NRRD, MHA, PNG, JPEG, TIFF, npz), a DICOMDIR, a folder of DICOM
            files, or a list of DICOM files.
        series_uid: which DICOM series to read when the source holds several (see :func:`find_series`).
        kind: force ``"label"`` or ``"scalar"``; by default the format decides (DICOM SEG and NIfTI with a
            label intent are labels).
        format: a reader name from :func:`list_readers`, to skip detection.
        **options: reader options (``key=`` and ``index=`` for npz).

    Raises:
        InputError: the source is missing, unreadable, ambiguous, or of an unknown format.

    Example:
        >>> from medlens.io import read_image
        >>> image = read_image("series_folder/")  # doctest: +SKIP
        >>> image.array.shape, image.spacing, image.orientation  # doctest: +SKIP
        ((1, 256, 256, 192), (0.86, 0.86, 0.9), 'PIR')
    """
    if isinstance(source, str | Path):
        src: Path | list[Path] = Path(source).expanduser()
    else:
        src = [Path(p).expanduser() for p in source]
        if not src:
            raise InputError(Path("."), "empty list of files")
        if len(src) == 1:
            src = src[0]
    name = format or detect_format(src)
    entry = get_reader(name)
    if name in ("dicom-series", "dicomdir"):
        options["series_uid"] = series_uid
    elif series_uid is not None:
        logger.debug("series_uid ignored for a %s file", name)
    if kind is not None and entry.takes_kind:
        options["kind"] = kind
    image = entry.fn(src, **options)
    if kind is not None:
        image.kind = kind
    if name == "dicom" and isinstance(src, Path):
        image.meta.setdefault("source_files", [str(src)])  # what a DICOM SEG or SR made from it refers to
    logger.debug("read %s as %s: shape %s", src, name, image.array.shape)
    return image
