"""Writing images: :func:`write_image` picks the writer from the output suffix. Every writer is atomic.

| suffix | writer | what is written |
|---|---|---|
| ``.nii``, ``.nii.gz`` | :func:`medlens.io.nifti.write_nifti` | 3D volume with its affine |
| ``.nrrd``, ``.mha`` | :func:`medlens.io.itk_formats.write_itk` | 3D volume, LPS header |
| ``.npz`` | :func:`write_npz` | array, affine and kind, exactly |
| ``.png`` | :func:`write_png` | an 8-bit picture through a display window |
| ``.dcm`` | :func:`write_dicom_capture` | the same picture as DICOM Secondary Capture |
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.core.outputs import atomic_file
from medlens.io.windowing import to_uint8

Window = str | tuple[float, float] | None


def rendered_slice(image: Image, slice_index: int | None = None) -> np.ndarray:
    """One 2D plane as ``(C, H, W)``: a 2D image as it is, of a 3D one slice ``k`` (middle by default).

    3D index axes are (i along a row, j down a column, k across slices), so a plane is transposed to rows
    first for display.
    """
    if image.spatial_dims == 2:
        return image.array
    if image.spatial_dims != 3:
        raise ValueError(f"cannot render a {image.spatial_dims}D image")
    depth = image.array.shape[3]
    k = depth // 2 if slice_index is None else slice_index
    if not 0 <= k < depth:
        raise ValueError(f"slice {k} out of range (0..{depth - 1})")
    return image.array[:, :, :, k].transpose(0, 2, 1)  # (C, I, J) -> (C, H=J, W=I)


def render(image: Image, window: Window = None, slice_index: int | None = None) -> np.ndarray:
    """An 8-bit picture of the image: ``(H, W)`` grey or ``(H, W, 3|4)`` colour."""
    plane = rendered_slice(image, slice_index)  # (C, H, W)
    pixels = to_uint8(image, plane, window)
    if pixels.shape[0] == 1:
        return pixels[0]
    if pixels.shape[0] in (3, 4):
        return pixels.transpose(1, 2, 0)  # (H, W, C)
    raise ValueError(f"cannot render {pixels.shape[0]} channels as a picture (1, 3 or 4)")


def write_png(image: Image, path: Path, window: Window = None, slice_index: int | None = None) -> Path:
    """Write a PNG through a display window (see :mod:`medlens.io.windowing` for presets)."""
    from PIL import Image as PILImage

    try:
        pixels = render(image, window, slice_index)
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())  # type: ignore[attr-defined]
    return path


def write_dicom_capture(
    image: Image, path: Path, window: Window = None, slice_index: int | None = None, **options: Any
) -> Path:
    """Render the image (as :func:`write_png` does) and write it as DICOM Secondary Capture."""
    from medlens.io.secondary_capture import write_secondary_capture

    try:
        pixels = render(image, window, slice_index)
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]  # DICOM has no alpha
    return write_secondary_capture(image, path, pixels, **options)


def write_npz(image: Image, path: Path) -> Path:
    """Write array, affine and kind to a compressed numpy archive (read back exactly by ``read_image``)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array=image.array, affine=image.affine, kind=np.asarray(image.kind))
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())  # type: ignore[attr-defined]
    return path


def _nifti(image: Image, path: Path) -> Path:
    from medlens.io.nifti import write_nifti

    return write_nifti(image, path)


def _itk(image: Image, path: Path) -> Path:
    from medlens.io.itk_formats import write_itk

    return write_itk(image, path)


_WRITERS: dict[str, Callable[..., Path]] = {
    ".nii": _nifti,
    ".nii.gz": _nifti,
    ".nrrd": _itk,
    ".mha": _itk,
    ".npz": write_npz,
    ".png": write_png,
    ".dcm": write_dicom_capture,
}


def list_writers() -> list[str]:
    """The output suffixes :func:`write_image` knows."""
    return sorted(_WRITERS)


def write_image(image: Image, path: str | Path, **options: Any) -> Path:
    """Write an image, choosing the format from the suffix of ``path``.

    Args:
        image: what to write.
        path: the output file; its suffix picks the format (see :func:`list_writers`).
        **options: writer options: ``window=`` and ``slice_index=`` for ``.png`` and ``.dcm``,
            ``reference=`` (a source DICOM) for ``.dcm``.

    Raises:
        InputError: unknown suffix, or an image the format cannot hold.

    Example:
        >>> from medlens.io import read_image, write_image
        >>> write_image(read_image("ct_series/"), "ct.nii.gz")  # doctest: +SKIP
        >>> write_image(read_image("ct_series/"), "ct.png", window="brain")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    if suffix not in _WRITERS:
        raise InputError(path, f"unknown output format {suffix or '(no suffix)'}; known: {' '.join(list_writers())}")
    return _WRITERS[suffix](image, path, **options)
