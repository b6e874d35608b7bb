"""Real cases as a PACS holds them: Hippocampus volumes as DICOM MR series with their labels as DICOM SEG, and
PneumoniaMNIST pictures as single-image DICOM studies (built in temporary folders from the shared data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

HIPPO_CLASSES = ["background", "anterior", "posterior"]


def hippocampus_entries(root: Path) -> list[dict[str, str]]:
    """The training entries of the Decathlon task's dataset.json (image and label paths)."""
    return list(json.loads((root / "dataset.json").read_text())["training"])


def hippocampus_study(
    root: Path,
    index: int,
    folder: Path,
    *,
    patient_id: str | None = None,
    accession: str | None = None,
    with_seg: bool = True,
) -> tuple[list[Path], Path | None]:
    """Case ``index`` of the real Task04_Hippocampus as a DICOM MR series in ``folder/image`` and its label map as
    a DICOM SEG ``folder/seg.dcm`` referencing that series (same study); returns (series files, SEG)."""
    from medlens.io import read_image
    from medlens.io.dicom_series_writer import write_dicom_series

    entry = hippocampus_entries(root)[index]
    name = Path(entry["image"]).name.removesuffix(".nii.gz")
    image = read_image(root / entry["image"])
    study = generate_uid()
    files = write_dicom_series(
        image,
        folder / "image",
        modality="MR",
        series_description="T1 hippocampus crop",
        patient_id=patient_id or f"PAT-{name}",
        patient_name=f"Test^{name}",
        study_uid=study,
    )
    for path in files:  # identifiers as a hospital's archive would hold them
        ds = pydicom.dcmread(path)
        ds.AccessionNumber = accession or f"ACC{index:05d}"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID = "19700101", "F", f"S{index}"
        ds.save_as(path, enforce_file_format=True)
    if not with_seg:
        return files, None
    from medlens.io.dicom_seg import write_dicom_seg

    volume = read_image(files)
    label = read_image(root / entry["label"], kind="label")
    labels = np.asarray(label.array[0]).astype(np.uint8)
    if labels.shape != volume.spatial_shape or not np.allclose(label.affine, volume.affine, atol=1e-3):
        raise ValueError(f"{name}: label grid {labels.shape} does not match the DICOM series {volume.spatial_shape}")
    seg = write_dicom_seg(labels, volume, files, folder / "seg.dcm", HIPPO_CLASSES, series_description="manual labels")
    return files, seg


def picture_study(pixels: np.ndarray, path: Path, *, accession: str, patient_id: str, modality: str = "DX") -> Path:
    """A 2D uint8 picture, grey ``(H, W)`` or colour ``(H, W, 3)``, as a one-image DICOM study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, f"Test^{patient_id}", "", ""
    ds.AccessionNumber, ds.StudyID, ds.StudyDate, ds.StudyTime = accession, "1", "20240102", "101010"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.Modality, ds.ConversionType, ds.SeriesDescription = modality, "WSD", "picture"
    ds.PatientOrientation = ""
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape[:2])
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint8)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
