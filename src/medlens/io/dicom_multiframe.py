"""Multi-frame DICOM (enhanced MR/CT, SEG, legacy multi-frame) becomes one volume.

Geometry comes from the per-frame and shared functional groups (PlanePositionSequence,
PlaneOrientationSequence, PixelMeasuresSequence, PixelValueTransformationSequence). A DICOM SEG is read
as a label map: each frame is painted with its ReferencedSegmentNumber.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medlens.core.image import Image
from medlens.io.dicom_geometry import lps_to_ras, stack_geometry
from medlens.io.dicom_pixels import (
    apply_rescale,
    decode_pixels,
    invert_monochrome1,
    note_photometric,
    stack_to_channel_first,
)
from medlens.io.dicom_tags import frame_attribute, identifiers_of, meta_of

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _floats(value: object) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in value]  # type: ignore[attr-defined]


def read_multiframe(ds: Dataset, path: Path) -> Image:
    """Read a multi-frame dataset into ``(C, cols, rows, frames)`` with a RAS+ affine.

    Frames without positions (e.g. cine or stripped enhanced files) are stacked in stored order with the
    slice spacing from the header (or 1 mm) and a warning.
    """
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    stored = decode_pixels(ds, path)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        stored = invert_monochrome1(stored, ds)
    if n_frames == 1:
        stored = stored[None]
    warnings: list[str] = []
    is_seg = str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS

    positions = [
        _floats(frame_attribute(ds, f, "PlanePositionSequence", "ImagePositionPatient")) for f in range(n_frames)
    ]
    orientation = _floats(frame_attribute(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient"))
    orientation = orientation or _floats(ds.get("ImageOrientationPatient"))
    spacing = _floats(frame_attribute(ds, 0, "PixelMeasuresSequence", "PixelSpacing")) or _floats(
        ds.get("PixelSpacing")
    )
    between = frame_attribute(ds, 0, "PixelMeasuresSequence", "SpacingBetweenSlices") or ds.get("SpacingBetweenSlices")
    between_f = float(between) if between not in (None, "") else None
    if spacing is None:
        spacing = [1.0, 1.0]
        warnings.append("no PixelSpacing: in-plane spacing assumed 1 mm")

    if is_seg:
        segments = [
            int(frame_attribute(ds, f, "SegmentIdentificationSequence", "ReferencedSegmentNumber") or 1)
            for f in range(n_frames)
        ]
        stored = (stored > 0).astype(np.uint16) * np.asarray(segments, np.uint16)[:, None, None]  # (F, R, C)

    if orientation is not None and all(p is not None for p in positions):
        pos = np.asarray(positions, dtype=float)  # (F, 3)
        if is_seg:
            # Frames of different segments share positions: paint them into one label map per position.
            keys = np.round(pos @ np.cross(orientation[:3], orientation[3:6]), 3)
            uniq, inverse = np.unique(keys, return_inverse=True)
            merged = np.zeros((len(uniq), *stored.shape[1:]), dtype=stored.dtype)
            for f, slot in enumerate(inverse):
                merged[slot] = np.maximum(merged[slot], stored[f])
            first_of = [int(np.flatnonzero(inverse == s)[0]) for s in range(len(uniq))]
            stored, pos = merged, pos[first_of]
        geometry = stack_geometry(pos, np.asarray(orientation), (spacing[0], spacing[1]), between_f)
        stored = stored[geometry.order]
        affine_lps = geometry.affine_lps
        warnings.extend(geometry.warnings)
        order = geometry.order
    else:
        warnings.append(
            "multi-frame file without per-frame positions: frames stacked in stored order, "
            f"slice spacing {between_f or 1.0} mm from the header, orientation unknown"
        )
        affine_lps = np.diag([-spacing[1], -spacing[0], between_f or 1.0, 1.0])
        order = list(range(stored.shape[0]))

    if not is_seg and samples == 1:
        slopes = [
            float(
                frame_attribute(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
                or ds.get("RescaleSlope", 1)
                or 1
            )
            for f in order
        ]
        intercepts = [
            float(
                frame_attribute(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
                or ds.get("RescaleIntercept", 0)
                or 0
            )
            for f in order
        ]
        stored = apply_rescale(stored, np.asarray(slopes), np.asarray(intercepts))

    meta = meta_of(ds)
    meta["n_frames"] = n_frames
    note_photometric(meta, ds)
    if is_seg:
        meta["segments"] = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence", [])}
    return Image(
        array=stack_to_channel_first(stored, 1 if is_seg else samples),
        affine=lps_to_ras(affine_lps),
        kind="label" if is_seg else "scalar",
        meta=meta,
        identifiers=identifiers_of(ds),
        warnings=warnings,
    )
