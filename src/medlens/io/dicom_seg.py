"""DICOM Segmentation objects for label maps predicted on a DICOM series, through highdicom.

Each source slice is matched to the volume slice at the same position in the patient (not by file order),
so the SEG's frames reference exactly the source images they were predicted on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import SegmentationStorage

from medlens.core.errors import InputError, one_line
from medlens.core.image import Image
from medlens.core.outputs import atomic_file
from medlens.io.dicom_geometry import LPS_TO_RAS
from medlens.io.dicom_type2 import with_type2_attributes

MANUFACTURER = "medlens"
POSITION_TOLERANCE_MM = 0.1


def source_slices(files: Sequence[Path], image: Image) -> tuple[list[Any], list[int]]:
    """The source datasets and, for each, the index ``k`` of its slice in ``image`` (matched by position)."""
    datasets = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in files]
    inverse = np.linalg.inv(image.affine)
    indices = []
    for ds, path in zip(datasets, files, strict=True):
        if "ImagePositionPatient" not in ds:
            raise InputError(path, "no ImagePositionPatient: cannot place a segmentation on this slice")
        lps = np.array([float(v) for v in ds.ImagePositionPatient] + [1.0])
        voxel = inverse @ (LPS_TO_RAS @ lps)  # (i, j, k, 1) of the slice's first pixel
        k = round(float(voxel[2]))
        if abs(voxel[2] - k) > POSITION_TOLERANCE_MM or not 0 <= k < image.spatial_shape[2]:
            raise InputError(path, f"slice position {voxel[:3].round(2).tolist()} is not on the volume's grid")
        indices.append(k)
    return datasets, indices


def write_dicom_seg(
    labels: np.ndarray,
    image: Image,
    files: Sequence[Path],
    path: Path,
    class_names: Sequence[str],
    *,
    series_description: str = "medlens segmentation",
    series_number: int = 9902,
    software_version: str = "medlens",
) -> Path:
    """Write a label map ``(I, J, K)`` predicted on a DICOM series as a DICOM SEG referencing it, atomically.

    Args:
        labels: class indices on the grid of ``image`` (0 background).
        image: the volume read from the series (its affine places each slice).
        files: the series' DICOM files.
        path: the output ``.dcm`` file.
        class_names: all class names, background first; one segment per foreground class.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        software_version: recorded in the SEG's algorithm identification.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if labels.shape != image.spatial_shape:
        raise InputError(path, f"label map {labels.shape} does not match the series volume {image.spatial_shape}")
    datasets, indices = source_slices(files, image)
    frames = np.stack([labels[:, :, k].T for k in indices]).astype(np.uint8)  # (n_source, rows, columns)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medlens", family=codes.cid7162.ArtificialIntelligence, version=software_version
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for k, name in enumerate(class_names[1:], start=1)
    ]
    # highdicom reads patient, study and geometry from the headers; a Type 2 attribute a source lacks is empty
    sources = with_type2_attributes(datasets, SegmentationStorage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="medlens",
            software_versions=software_version,
            device_serial_number="0",
            series_description=series_description,
        )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())  # type: ignore[attr-defined]
    return path


def read_dicom_seg(path: Path, image: Image, files: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    """A DICOM SEG as a label map ``(I, J, K)`` on the grid of the series it references, and its class names.

    Frames are placed by the source instance each references (and that instance's slice by position, as
    :func:`write_dicom_seg` does), so the map lies on ``image`` whatever the order of frames or files.

    Args:
        path: the SEG file.
        image: the referenced series read as a volume.
        files: the referenced series' files.

    Returns:
        The label map (segment numbers as class indices; 0 where no segment is) and the class names,
        ``background`` first, then each segment's label in segment-number order.

    Raises:
        InputError: not a SEG, overlapping segments, segment numbers that are not 1..n, or a SEG that
            references none of ``files``.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom/highdicom raise many kinds for a file that is not a SEG
        raise InputError(path, f"not a readable DICOM SEG ({type(exc).__name__}: {one_line(str(exc))[:160]})") from None
    numbers = sorted(int(n) for n in seg.segment_numbers)
    if numbers != list(range(1, len(numbers) + 1)):
        raise InputError(path, f"segment numbers {numbers} are not 1..{len(numbers)}")
    names = ["background"] + [str(seg.get_segment_description(n).segment_label) for n in numbers]
    datasets, indices = source_slices(files, image)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise InputError(path, "references none of the series' images")
    try:
        frames = seg.get_pixels_by_source_instance(
            uids, combine_segments=True, relabel=False, assert_missing_frames_are_empty=True
        )  # (n_source, rows, columns)
    except RuntimeError as exc:  # highdicom: segments overlap, so one label per voxel is not defined
        raise InputError(path, f"segments cannot be combined into one label map ({one_line(str(exc))[:160]})") from None
    labels = np.zeros(image.spatial_shape, np.uint8)
    for frame, k in zip(frames, indices, strict=True):
        labels[:, :, k] = frame.T  # (rows=J, columns=I) -> (I, J)
    return labels, names
