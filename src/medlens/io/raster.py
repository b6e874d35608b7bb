"""Ordinary pictures (PNG, JPEG, TIFF, BMP, GIF) through Pillow, and numpy archives (.npz, .npy).

Pictures carry no patient geometry: they become 2D ``(C, H, W)`` images with 1 mm pixels (or the
resolution stored in the file when it gives one).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image, default_affine

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


def read_raster(path: Path, *, palette_indices: bool = False) -> Image:
    """Read a picture: grey to ``(1, H, W)``, RGB(A) to ``(3|4, H, W)``.

    Palettes are expanded to RGB (to grey when all their colours are greys), except with ``palette_indices``
    (label masks): a palette mask (Pascal VOC PNGs, GIF masks) stores the class as the palette index, and
    its colours only draw it. A palette of greys is the exception: its masks mean the grey value (0/255 GIF
    masks), so it is read as grey.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    warnings: list[str] = []
    try:
        with PILImage.open(path) as pic:
            n_frames = int(getattr(pic, "n_frames", 1))
            if n_frames > 1:
                warnings.append(f"{n_frames} pages or frames; only the first was read")
            plain: PILImage.Image = pic
            if pic.mode == "P" and palette_indices and not _grey_palette(pic):
                plain = pic
            elif pic.mode == "P" and (palette_indices or _grey_palette(pic)) and "transparency" not in pic.info:
                plain = pic.convert("L")  # a palette of greys (GIFs are always palettes): one grey channel
            elif pic.mode in ("P", "PA"):
                plain = pic.convert("RGBA" if "transparency" in pic.info or pic.mode == "PA" else "RGB")
            elif pic.mode in ("LA", "CMYK", "YCbCr"):
                plain = pic.convert("L" if pic.mode == "LA" else "RGB")
            mode = plain.mode
            data = np.asarray(plain)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise InputError(path, f"unreadable picture ({type(exc).__name__}: {exc})") from exc
    array = data[None] if data.ndim == 2 else data.transpose(2, 0, 1)  # (C, H, W)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return Image(
        array=np.ascontiguousarray(array),
        affine=default_affine(2),
        meta={"source_format": path.suffix.lstrip(".").lower(), "mode": mode},
        warnings=warnings,
    )


def _grey_palette(pic: object) -> bool:
    """True when every colour the picture uses is a grey (R = G = B)."""
    used = np.unique(np.asarray(pic))
    colours = np.asarray(pic.getpalette() or [], dtype=np.int64).reshape(-1, 3)  # type: ignore[attr-defined]
    used = used[used < len(colours)]
    return bool(np.all(colours[used] == colours[used, :1]))


def read_numpy(path: Path, key: str | None = None, index: int | None = None) -> Image:
    """Read an array saved with numpy.

    An archive written by :func:`medlens.io.write_image` holds ``array`` (channel-first), ``affine`` and
    ``kind`` and round-trips exactly. Any other archive needs the array named by ``key`` when it holds
    several; ``index`` picks one item along the first axis (e.g. one image of a MedMNIST split). Bare
    arrays without an affine are read as ``(H, W)`` 2D or ``(X, Y, Z)`` 3D single-channel images.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = {"arr_0": loaded} if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"unreadable numpy file ({type(exc).__name__}: {exc})") from exc
    if key is None:
        images = [k for k in ("array", "image", "arr_0") if k in arrays]
        if images:
            key = images[0]
        elif len(arrays) == 1:
            key = next(iter(arrays))
        else:
            raise InputError(path, f"holds several arrays, name one with key=: {', '.join(sorted(arrays))}")
    if key not in arrays:
        raise InputError(path, f"no array {key!r}; it holds {', '.join(sorted(arrays))}")
    data = arrays[key]
    if index is not None:
        if not 0 <= index < len(data):
            raise InputError(path, f"index {index} out of range for {key!r} of length {len(data)}")
        data = data[index]
    meta = {"source_format": "npz", "key": key}
    kind = str(arrays["kind"]) if "kind" in arrays else "scalar"
    if kind not in ("scalar", "label"):
        raise InputError(path, f"kind must be 'scalar' or 'label', not {kind!r}")
    if "affine" in arrays and index is None:
        affine = np.asarray(arrays["affine"], dtype=float)
        if data.ndim != affine.shape[0]:
            raise InputError(path, f"array shape {data.shape} does not match a {affine.shape} affine")
        return Image(array=data, affine=affine, kind=kind, meta=meta)  # type: ignore[arg-type]
    if data.ndim not in (2, 3):
        raise InputError(path, f"cannot tell channels from space in a bare {data.ndim}D array {data.shape}")
    return Image(array=data[None], affine=default_affine(data.ndim), kind=kind, meta=meta)  # type: ignore[arg-type]
