"""Reading a segmentation case (image channels + label map) and checking that the two belong together.

Importers, the fingerprint, training, evaluation and prediction all read cases through here, so a case is
either accepted everywhere or rejected with the same message naming it: image and mask of different
shapes or geometry, labels outside the declared set, or channels that do not line up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image, count_nonfinite

log = logging.getLogger(__name__)
GEOMETRY_TOLERANCE_MM = 1e-2  # affines may differ by float32 rounding between image and mask writers


def read_channels(paths: Sequence[Path], spatial_dims: int, case_id: str = "") -> Image:
    """The image of a case: every file's channels stacked in order, all on one grid.

    Raises:
        InputError: a file is missing or unreadable, of the wrong dimensionality, or on another grid.
    """
    from medlens.io import read_image

    images = []
    for path in paths:
        if not Path(path).exists():
            raise InputError(path, f"case {case_id}: image file missing")
        image = _as_dims(read_image(path), spatial_dims, path, case_id)
        bad = count_nonfinite(image.array)
        if bad:
            raise InputError(path, f"case {case_id}: {bad} voxel(s) are NaN or infinite")
        images.append(image)
    first = images[0]
    for path, image in zip(paths[1:], images[1:], strict=True):
        _check_same_grid(first, image, path, case_id, what="channel")
    if len(images) == 1:
        return first
    array = np.concatenate([im.array.astype(np.float32, copy=False) for im in images])  # (C, *spatial)
    return Image(array, first.affine, "scalar", dict(first.meta), dict(first.identifiers), list(first.warnings))


def read_label_map(
    path: Path, spatial_dims: int, n_classes: int, case_id: str = "", label_values: Sequence[int] | None = None
) -> Image:
    """A case's label map as class indices ``(1, *spatial)`` uint8.

    Args:
        path: the mask file (any format medlens reads).
        spatial_dims: 2 or 3.
        n_classes: declared classes, background included; other values are an error.
        case_id: named in errors.
        label_values: the pixel value of each class index when masks do not store indices (``[0, 255]``).

    Raises:
        InputError: missing file, several channels, or values outside the declared classes.
    """
    from medlens.io import read_image

    if not Path(path).exists():
        raise InputError(path, f"case {case_id}: mask file missing")
    mask = _as_dims(read_image(path, kind="label"), spatial_dims, path, case_id)
    array = mask.array
    if array.shape[0] != 1:
        if array.shape[0] in (3, 4) and np.all(array[:3] == array[:1]):  # grey mask saved as RGB(A)
            array = array[:1]
        else:
            raise InputError(path, f"case {case_id}: a mask has one channel, this one has {array.shape[0]}")
    values = np.unique(array)
    if label_values is not None:
        lookup = {int(v): i for i, v in enumerate(label_values)}
        unknown = [v for v in values.tolist() if v not in lookup]
        if unknown:
            raise InputError(path, f"case {case_id}: mask values {unknown[:10]} outside the declared {list(lookup)}")
        indices = np.zeros(array.shape, dtype=np.uint8)
        for value, index in lookup.items():
            indices[array == value] = index
    else:
        if (
            not np.all(np.isfinite(values))
            or np.any(values != np.round(values))
            or values.min() < 0
            or values.max() >= n_classes
        ):
            bad = [v for v in values.tolist() if not np.isfinite(v) or v != round(v) or not 0 <= v < n_classes]
            raise InputError(
                path,
                f"case {case_id}: label value(s) {bad[:10]} outside the {n_classes} declared classes "
                f"0..{n_classes - 1}",
            )
        indices = array.astype(np.uint8)
    return Image(indices, mask.affine, "label", dict(mask.meta), dict(mask.identifiers))


def read_case(
    image_paths: Sequence[Path],
    mask_path: Path,
    spatial_dims: int,
    n_classes: int,
    case_id: str = "",
    label_values: Sequence[int] | None = None,
) -> tuple[Image, Image]:
    """Image and label map of one case, checked to share one grid."""
    image = read_channels(image_paths, spatial_dims, case_id)
    mask = read_label_map(mask_path, spatial_dims, n_classes, case_id, label_values)
    _check_same_grid(image, mask, mask_path, case_id, what="mask")
    return image, mask


def _as_dims(image: Image, spatial_dims: int, path: Path, case_id: str) -> Image:
    if spatial_dims == 2:
        image = image.as_2d()
    if image.spatial_dims != spatial_dims:
        raise InputError(path, f"case {case_id}: {image.spatial_dims}D image in a {spatial_dims}D dataset")
    return image


def _check_same_grid(reference: Image, other: Image, path: Path, case_id: str, *, what: str) -> None:
    if reference.spatial_shape != other.spatial_shape:
        raise InputError(
            path,
            f"case {case_id}: {what} shape {list(other.spatial_shape)} differs from the image's "
            f"{list(reference.spatial_shape)}",
        )
    if not np.allclose(reference.affine, other.affine, atol=GEOMETRY_TOLERANCE_MM):
        diff = float(np.abs(reference.affine - other.affine).max())
        raise InputError(
            path,
            f"case {case_id}: {what} geometry (affine) differs from the image's by up to {diff:.3g} mm "
            f"(spacing {np.round(other.spacing, 4).tolist()} vs {np.round(reference.spacing, 4).tolist()})",
        )


def foreground_classes_present(mask: Image) -> list[int]:
    """The non-zero class indices present in a label map."""
    return [int(v) for v in np.unique(mask.array) if v != 0]


def label_values_of(source: dict[str, str]) -> list[int] | None:
    """The mask value of each class index, when the importer recorded one (``source.label_values``)."""
    text = source.get("label_values", "")
    return [int(v) for v in text.split(",")] if text else None
