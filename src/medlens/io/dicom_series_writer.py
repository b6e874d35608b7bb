"""Write a volume as a DICOM series: one MR or CT Image Storage file per slice, with full geometry.

For sending volumes that exist only as NIfTI (research data, derived volumes) to DICOM tools and PACS, and for
checking that a model gives the same answer on the same voxels read from DICOM. The files carry the Image Plane
module (position, orientation, spacing) so any DICOM reader rebuilds the volume and its place in the patient;
pixel values are stored as 16-bit integers with a rescale slope and intercept that keep the original range.

Written with pydicom directly: highdicom creates derived objects (SEG, SR, Secondary Capture, Parametric Map),
not classic single-frame MR/CT images, and SimpleITK's DICOM writer leaves out the study and series metadata
that medlens keeps with the image.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.io.dicom_geometry import LPS_TO_RAS

MANUFACTURER = "medlens"
_SOP_CLASS = {"MR": MRImageStorage, "CT": CTImageStorage}


def write_dicom_series(
    image: Image,
    folder: Path,
    *,
    modality: str = "MR",
    series_description: str = "medlens volume",
    patient_id: str = "",
    patient_name: str = "",
    study_uid: str | None = None,
) -> list[Path]:
    """Write a 3D one-channel ``image`` into ``folder`` as ``0001.dcm``, ``0002.dcm``, ... (folder created).

    Args:
        image: a 3D volume with its affine (RAS+); its index axes become columns, rows and slices.
        folder: where to write (must not exist or be empty).
        modality: ``MR`` or ``CT`` (the storage class; CT values are written as they are, in HU).
        series_description: the series' description.
        patient_id: PatientID (empty by default: the volume carries no identity).
        patient_name: PatientName.
        study_uid: join this study (a new one otherwise).

    Returns:
        The files written, in slice order.
    """
    if image.spatial_dims != 3 or image.channels != 1:
        raise InputError(folder, f"a DICOM series needs a 3D one-channel volume, got shape {image.array.shape}")
    if modality not in _SOP_CLASS:
        raise InputError(folder, f"modality {modality!r}: write MR or CT")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(folder, "exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    volume = image.array[0].astype(np.float64)  # (I, J, K): I along a row, J down a column, K across slices
    if not np.all(np.isfinite(volume)):
        raise InputError(folder, "the volume holds NaN or infinite values")
    low, high = float(volume.min()), float(volume.max())
    slope = (high - low) / 65535.0 if high > low else 1.0
    affine = LPS_TO_RAS @ image.affine  # voxel -> LPS
    spacing = image.spacing
    row_dir = affine[:3, 0] / spacing[0]  # along a row: increasing column index (I)
    col_dir = affine[:3, 1] / spacing[1]  # down a column: increasing row index (J)
    series_uid, frame_uid = generate_uid(), generate_uid()
    study = study_uid or generate_uid()
    now = dt.datetime.now()
    paths = []
    for k in range(volume.shape[2]):
        stored = np.rint((volume[:, :, k].T - low) / slope).clip(0, 65535).astype(np.uint16)  # (rows=J, cols=I)
        ds = _slice_dataset(modality, study, series_uid, frame_uid, now)
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.SeriesDescription = series_description
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(v), 6) for v in affine[:3, :3] @ [0.0, 0.0, k] + affine[:3, 3]]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]  # between rows, columns
        ds.SliceThickness = round(float(spacing[2]), 6)
        ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}"[:16], f"{low:.10g}"[:16]
        ds.PixelData = stored.tobytes()
        path = folder / f"{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _slice_dataset(modality: str, study: str, series: str, frame: str, now: dt.datetime) -> Dataset:
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = _SOP_CLASS[modality], sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ds.AccessionNumber = ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.PositionReferenceIndicator = ds.Laterality = ds.PatientPosition = ""
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    if modality == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "RM", "NONE", "", "3D"
        ds.EchoTrainLength = ds.RepetitionTime = ds.EchoTime = ""
    else:
        ds.KVP = ""
    pydicom.dataset.validate_file_meta(ds.file_meta, enforce_standard=True)
    return ds
