"""De-identify one file: read, flag or blank burned-in text, apply the profile, stamp, write atomically.

One ``FileJob`` lives in each worker process and handles one file at a time, so memory holds a single
dataset whatever the number of files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medlens.deid.elements import ElementRules, patient_key
from medlens.deid.files import Skipped, WriteFailed, read_dicom, unreadable, write_dicom
from medlens.deid.pixels import blank_regions, burned_in_reason
from medlens.deid.profile import Options, load_profile
from medlens.deid.pseudonyms import Pseudonymizer
from medlens.deid.report import FileResult

# PS3.16 CID 7050 "De-identification Method": the profile and each option used.
_CID_7050 = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "pixels": ("113101", "Clean Pixel Data Option"),
    "dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "patient": ("113108", "Retain Patient Characteristics Option"),
    "device": ("113109", "Retain Device Identity Option"),
    "private": ("113111", "Retain Safe Private Option"),
}


@dataclass(frozen=True)
class JobConfig:
    """Everything a worker needs; plain data so it can be sent to other processes."""

    profile: str
    options: Options
    key: bytes
    out: str
    quarantine: str
    reject_burned_in: bool
    record_mapping: bool


def output_relpath(pseudo: Pseudonymizer, rel: str) -> str:
    """Mirror the input's folders, with every folder and file name replaced by a keyed hash."""
    parts = PurePosixPath(rel).parts
    dirs = [pseudo.name("folder", "/".join(parts[: i + 1]), 12) for i in range(len(parts) - 1)]
    return "/".join([*dirs, pseudo.name("file", rel) + ".dcm"])


class FileJob:
    """De-identifies files one at a time under one configuration."""

    def __init__(self, config: JobConfig) -> None:
        self.config = config
        self.profile = load_profile(config.profile, config.options)
        self.pseudo = Pseudonymizer(config.key, record=config.record_mapping)
        self.rules = ElementRules(self.profile, self.pseudo)
        self.out = Path(config.out)
        self.quarantine = Path(config.quarantine)

    def __call__(self, task: tuple[str, str]) -> FileResult:
        source, rel = task
        self.pseudo.mapping.clear()
        rel_out = output_relpath(self.pseudo, rel)
        done = (self.out / rel_out).exists() or (self.quarantine / rel_out).exists()
        if done and not self.config.record_mapping:
            return FileResult(rel, "done", output=rel_out)
        try:
            ds = read_dicom(Path(source))
        except Skipped as exc:
            return FileResult(rel, "skipped", reason=str(exc))
        try:
            result = self._deidentify(ds, rel, rel_out, write=not done)
        except (KeyboardInterrupt, SystemExit, MemoryError, WriteFailed):
            raise
        except Exception as exc:  # a value pydicom cannot decode or encode: account for it, go on
            return FileResult(rel, "skipped", reason=unreadable(exc))
        if done:
            result.status = "done"
        result.mapping = [(kind, orig, new) for (kind, orig), new in self.pseudo.mapping.items()]
        return result

    def _deidentify(self, ds: Dataset, rel: str, rel_out: str, write: bool) -> FileResult:
        options = self.config.options
        burned_in = burned_in_reason(ds)
        blanked = blank_regions(ds, self.profile.pixel_blanking) if self.profile.pixel_blanking else None
        patient = patient_key(ds)
        shift = self.pseudo.shift_days(patient) if options.keep_dates_shifted else None
        self.rules.kept_private = False
        self.rules.apply(ds, patient, shift)
        if ds.file_meta is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        self._stamp(ds, shifted=shift is not None, blanked=blanked is not None)
        self.pseudo.remember("path", rel, rel_out)
        flagged = burned_in if not blanked else None
        if flagged and self.config.reject_burned_in:
            if write:
                write_dicom(ds, self.quarantine / rel_out)
            return FileResult(rel, "quarantined", reason=flagged, output=rel_out, burned_in=flagged)
        if write:
            write_dicom(ds, self.out / rel_out)
        return FileResult(rel, "written", output=rel_out, burned_in=flagged, blanked=blanked)

    def _stamp(self, ds: Dataset, shifted: bool, blanked: bool) -> None:
        """PatientIdentityRemoved, DeidentificationMethod and its CID 7050 codes (PS3.15 E.1.1)."""
        options = self.config.options
        used = ["basic"]
        used += ["pixels"] if blanked else []
        used += ["dates"] if options.keep_dates_shifted else []
        used += ["patient"] if options.keep_patient_characteristics else []
        used += ["device"] if options.keep_device_identity else []
        used += ["private"] if self.rules.kept_private else []
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = f"medlens PS3.15 E.1-1 profile {Path(self.profile.name).stem}"[:64]
        items = []
        for name in used:
            item = Dataset()
            item.CodeValue, item.CodeMeaning = _CID_7050[name]
            item.CodingSchemeDesignator = "DCM"
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifted else "REMOVED"
