"""How DICOM slices are placed in the patient: sorting along the slice normal, spacing, affine, checks.

Pure functions on positions and orientations (no file access), shared by series and multi-frame reading.
DICOM world coordinates are LPS+; :func:`lps_to_ras` converts an affine to the RAS+ convention of
:class:`medlens.core.image.Image`.

Written by hand because the libraries that do this (SimpleITK's GDCM series sorter, dcm2niix) do not
expose the per-slice checks (gaps, duplicates, non-uniform spacing) as data we can report.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class StackGeometry:
    """Where a stack of equally oriented slices sits.

    Attributes:
        order: indices into the input slices, sorted along the slice normal, duplicates removed.
        affine_lps: 4x4 voxel (column, row, slice) to LPS millimetres.
        positions: distance of each kept slice along the normal (mm), in ``order``.
        warnings: geometry problems found (duplicates, gaps, non-uniform spacing, tilt).
    """

    order: list[int]
    affine_lps: np.ndarray
    positions: list[float]
    warnings: list[str] = field(default_factory=list)


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal of a slice from ImageOrientationPatient (row cosine x column cosine)."""
    row, col = orientation[:3], orientation[3:6]
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert a voxel-to-LPS affine to voxel-to-RAS (negate the first two world axes)."""
    return LPS_TO_RAS @ affine_lps


def stack_geometry(
    positions: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_spacing_hint: float | None = None,
    tie_break: list[int] | None = None,
) -> StackGeometry:
    """Sort slices along their normal and build the voxel-to-LPS affine of the stack.

    Index axes follow dcm2niix, ITK and nibabel: i runs along a row (increasing column index), j down the
    columns (increasing row index), k along the sorted slices.

    Args:
        positions: ``(N, 3)`` ImagePositionPatient of each slice (mm, LPS).
        orientation: the six ImageOrientationPatient cosines shared by the slices.
        pixel_spacing: DICOM PixelSpacing ``(row spacing, column spacing)`` in mm.
        slice_spacing_hint: SpacingBetweenSlices or SliceThickness, used only for a single slice.
        tie_break: a secondary sort key per slice (e.g. InstanceNumber) for equal positions.

    Returns:
        The order to stack slices in, the affine, and the problems found.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)  # (N, 3)
    orientation = np.asarray(orientation, dtype=float)
    n = len(positions)
    normal = slice_normal(orientation)
    distance = positions @ normal  # (N,) signed distance along the normal
    keys = tie_break if tie_break is not None else list(range(n))
    order = sorted(range(n), key=lambda i: (distance[i], keys[i]))
    warnings: list[str] = []

    # Duplicate positions: keep the first (by tie-break) of each group.
    sorted_d = distance[order]
    steps = np.diff(sorted_d)
    positive = steps[steps > 1e-3]
    typical = float(np.median(positive)) if positive.size else 0.0
    dup_tol = max(1e-3, 0.01 * typical)
    kept = [order[0]] if n else []
    dropped = 0
    for prev, cur in itertools.pairwise(order):
        if abs(distance[cur] - distance[prev]) <= dup_tol:
            dropped += 1
            continue
        kept.append(cur)
    if dropped:
        warnings.append(
            f"{dropped} slice(s) share a position with another slice and were dropped "
            "(repeated acquisition, several echoes or time points?)"
        )
    order = kept
    d = distance[order]
    steps = np.diff(d)

    row_cos, col_cos = orientation[:3], orientation[3:6]
    affine = np.eye(4)
    affine[:3, 0] = row_cos * float(pixel_spacing[1])
    affine[:3, 1] = col_cos * float(pixel_spacing[0])
    affine[:3, 3] = positions[order[0]] if n else 0.0
    if len(order) > 1:
        step_vec = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1)
        affine[:3, 2] = step_vec
        spacing = float(np.median(steps))
        if steps.max() - steps.min() > max(0.01 * spacing, 1e-3):
            gaps = int(np.sum(steps > 1.5 * spacing))
            warnings.append(
                f"slice spacing is not uniform ({steps.min():.4g} to {steps.max():.4g} mm"
                + (f", {gaps} gap(s) wider than 1.5x the median {spacing:.4g} mm" if gaps else "")
                + f"); the affine uses the mean spacing {np.linalg.norm(step_vec):.4g} mm: "
                "resample before measuring"
            )
        cos_tilt = abs(float(step_vec @ normal)) / float(np.linalg.norm(step_vec))
        if cos_tilt < 0.9999:
            angle = float(np.degrees(np.arccos(min(cos_tilt, 1.0))))
            warnings.append(
                f"slices are stacked {angle:.2f} degrees off their normal (gantry tilt): the affine is sheared"
            )
    else:
        affine[:3, 2] = normal * float(slice_spacing_hint or 1.0)
    return StackGeometry(order=order, affine_lps=affine, positions=[float(x) for x in d], warnings=warnings)


def same_orientation(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> bool:
    """Whether two ImageOrientationPatient vectors describe the same plane orientation."""
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tol))
