"""NRRD and MetaImage (.nrrd, .nhdr, .mha, .mhd) through SimpleITK.

ITK places images in LPS+; the readers and writers here convert to and from the RAS+ affine of
:class:`medlens.core.image.Image`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io.dicom_geometry import LPS_TO_RAS

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def itk_affine(img: sitk.Image) -> np.ndarray:
    """Voxel-to-RAS+ affine of a SimpleITK image (index order x, y, z)."""
    dim = img.GetDimension()
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)
    affine = np.eye(dim + 1)
    affine[:dim, :dim] = direction * np.asarray(img.GetSpacing())[None, :]
    affine[:dim, dim] = img.GetOrigin()
    if dim == 3:
        affine = LPS_TO_RAS @ affine
    return affine


def image_from_sitk(img: sitk.Image, source: Path) -> Image:
    """Convert a SimpleITK image to :class:`Image` (3D to ``(C, x, y, z)``, 2D to ``(C, rows, cols)``)."""
    dim = img.GetDimension()
    data = sitk.GetArrayFromImage(img)  # (z, y, x[, C]) or (y, x[, C])
    vector = img.GetNumberOfComponentsPerPixel() > 1
    if dim == 3:
        array = data.transpose(3, 2, 1, 0) if vector else data.transpose(2, 1, 0)[None]  # (C, x, y, z)
        affine = itk_affine(img)
    elif dim == 2:
        array = np.moveaxis(data, -1, 0) if vector else data[None]  # (C, rows, cols)
        sx, sy = img.GetSpacing()
        affine = np.diag([sy, sx, 1.0])  # (row, column) index to mm
    else:
        raise InputError(source, f"{dim}D images are not supported")
    return Image(array=array, affine=affine, meta={"source_format": source.suffix.lstrip(".").lower()})


def read_itk(path: Path) -> Image:
    """Read NRRD or MetaImage with SimpleITK."""
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(path, f"unreadable image ({first})") from exc
    return image_from_sitk(img, path)


def image_to_sitk(image: Image) -> sitk.Image:
    """Convert a 3D :class:`Image` to a SimpleITK image in LPS+ (several channels become a vector pixel)."""
    if image.spatial_dims != 3:
        raise ValueError("only 3D images convert to SimpleITK volumes")
    array = image.array.transpose(3, 2, 1, 0)  # (z, y, x, C)
    vector = image.channels > 1
    img = sitk.GetImageFromArray(array if vector else array[..., 0], isVector=vector)
    lps = LPS_TO_RAS @ image.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


@contextlib.contextmanager
def temporary_sibling(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` with the same suffix (SimpleITK picks its writer by suffix).

    ``core.outputs.atomic_file`` appends ``.partial`` to the name, which SimpleITK would not recognise.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or target.suffix
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_itk(image: Image, path: Path) -> Path:
    """Write NRRD or MHA with SimpleITK, atomically.

    Header/data pairs (.mhd, .nhdr) are refused: two files cannot appear at once.
    """
    if path.suffix.lower() not in (".nrrd", ".mha"):
        raise InputError(path, "write single-file .nrrd or .mha (header/data pairs cannot be written atomically)")
    if image.spatial_dims != 3:
        raise InputError(path, f"NRRD/MHA output needs a 3D image, got {image.spatial_dims}D")
    img = image_to_sitk(image)
    with temporary_sibling(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return path
