"""Reading and writing medical images: DICOM (files, series, DICOMDIR), NIfTI, NRRD/MHA, pictures, npz."""

from medlens.io.dicom_series import SeriesInfo, find_series
from medlens.io.registry import list_readers, read_image
from medlens.io.windowing import PRESETS as WINDOW_PRESETS
from medlens.io.writers import list_writers, write_image

__all__ = [
    "WINDOW_PRESETS",
    "SeriesInfo",
    "find_series",
    "list_readers",
    "list_writers",
    "read_image",
    "write_image",
]
