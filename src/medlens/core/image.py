"""An image is pixels plus the geometry that places them in the patient, and never one without the other.

Conventions (the same as nibabel and MONAI, so a MetaTensor can carry an :class:`Image` unchanged):

- ``array`` is channel-first: ``(C, H, W)`` for 2D, ``(C, I, J, K)`` for 3D, where I, J, K are the
  voxel index axes of the affine.
- ``affine`` maps voxel indices to millimetres in RAS+ world space (right, anterior, superior); DICOM
  and ITK use LPS+, and the readers convert.
- ``kind`` is ``"scalar"`` for intensities and ``"label"`` for label maps: label maps are resampled with
  nearest neighbour and never touched by intensity transforms.
- ``identifiers`` (patient, study, series IDs) are kept apart from ``meta`` so that de-identified
  pipelines can drop them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass
class Image:
    """Channel-first pixels with their geometry and metadata."""

    array: np.ndarray
    affine: np.ndarray
    kind: Literal["scalar", "label"] = "scalar"
    meta: dict[str, Any] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in millimetres along each index axis (column norms of the affine)."""
        d = self.spatial_dims
        return tuple(float(v) for v in np.linalg.norm(self.affine[:d, :d], axis=0))

    @property
    def origin(self) -> tuple[float, ...]:
        """World position (RAS+, mm) of the centre of the first voxel."""
        d = self.spatial_dims
        return tuple(float(v) for v in self.affine[:d, d])

    @property
    def direction(self) -> np.ndarray:
        """Unit direction cosines of the index axes, one column per axis (RAS+)."""
        d = self.spatial_dims
        return self.affine[:d, :d] / np.asarray(self.spacing)[None, :]

    @property
    def orientation(self) -> str:
        """Orientation code such as ``"RAS"`` or ``"LPI"``: the world direction each index axis points to."""
        if self.spatial_dims != 3:
            return ""
        import nibabel as nib

        return "".join(nib.orientations.aff2axcodes(self.affine))

    def as_2d(self) -> Image:
        """A one-slice volume as a 2D picture ``(C, row, column)``; any other image is returned unchanged.

        Single DICOM slices are read as one-slice volumes indexed ``(C, column, row, slice)``; 2D models and
        2D datasets take them as pictures, like PNGs.
        """
        if self.spatial_dims != 3 or self.spatial_shape[2] != 1:
            return self
        affine = np.eye(3)
        affine[:2, :2] = np.diag(self.spacing[1::-1])  # rows then columns
        return Image(
            self.array[..., 0].swapaxes(1, 2),
            affine,
            self.kind,
            dict(self.meta),
            dict(self.identifiers),
            list(self.warnings),
        )

    def to_metatensor(self) -> Any:
        """Return a MONAI MetaTensor carrying the pixels and the affine (for MONAI transforms).

        The array is shared, not copied, where MONAI allows it; the affine is float64 as MONAI keeps it.
        """
        import torch
        from monai.data import MetaTensor

        # torch refuses negative strides (a flipped view): copy only then
        array = self.array if min(self.array.strides, default=0) >= 0 else self.array.copy()
        return MetaTensor(torch.as_tensor(array), affine=torch.as_tensor(self.affine, dtype=torch.float64))

    def reoriented(self, axcodes: str = "RAS") -> Image:
        """The same image with its index axes turned to point along ``axcodes`` (3D; 2D images unchanged).

        Only axes are permuted and flipped (MONAI's ``Orientation``, nibabel's orientation rules), so no voxel
        value changes; the affine follows, and world coordinates stay those of the same voxels.
        """
        if self.spatial_dims != 3 or self.orientation == axcodes:
            return self
        from monai.transforms import Orientation

        moved = Orientation(axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(self.to_metatensor())
        out = Image(
            np.ascontiguousarray(moved.numpy()),
            np.asarray(moved.affine, dtype=np.float64),  # type: ignore[attr-defined]
            self.kind,
            dict(self.meta),
            dict(self.identifiers),
            list(self.warnings),
        )
        return out


def default_affine(spatial_dims: int, spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """An axis-aligned affine with the given spacing (1 mm when unknown)."""
    spacing = spacing or (1.0,) * spatial_dims
    affine = np.eye(spatial_dims + 1)
    affine[:spatial_dims, :spatial_dims] = np.diag(spacing)
    return affine


def count_nonfinite(array: np.ndarray) -> int:
    """How many values of ``array`` are NaN or infinite (none in integer and boolean arrays)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def require_finite(image: Image, source: str | None = None, doing: str = "use") -> Image:
    """Return ``image``; raise an error naming ``source`` when any pixel is NaN or infinite.

    A model must neither learn from nor diagnose pixels that are not numbers.
    """
    bad = count_nonfinite(image.array)
    if bad:
        from medlens.core.errors import InputError

        raise InputError(
            source or str(image.meta.get("source", "<memory>")),
            f"{bad} pixel(s) are NaN or infinite; refusing to {doing} it",
        )
    return image
