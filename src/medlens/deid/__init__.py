"""DICOM de-identification: PS3.15 Annex E Basic profile as data, keyed pseudonyms, burned-in text checks."""

from medlens.deid.profile import Options, list_profiles, load_profile
from medlens.deid.report import DeidReport, FileResult
from medlens.deid.run import deidentify

__all__ = ["DeidReport", "FileResult", "Options", "deidentify", "list_profiles", "load_profile"]
