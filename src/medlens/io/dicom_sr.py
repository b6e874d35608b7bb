"""DICOM Structured Reports of a model's findings: a Comprehensive 3D SR holding a TID 1500 Measurement Report,
through highdicom.

The report is built from findings (:mod:`medlens.core.findings`), by kind, never by task:

- ``volume``: a TID 1411 volumetric ROI group per segment, referencing the segment of the DICOM SEG (its SOP
  instance and segment number) and the source series, holding the volume (SCT Volume, UCUM ``ml``);
- ``area``: a TID 1501 group per structure with its area (SCT Area, ``mm2``) and the source images;
- ``probability``, ``predicted_class``, ``referral``: a TID 1501 group per class (tracked by the class name, the
  class as its finding type) with its probability (DCM Probability, UCUM ``1``), and a group tracked as
  ``predicted class`` whose finding type is the predicted class (one per label for multi-label), with the referral,
  when there is one, as a qualitative evaluation (yes or no);
- ``box``: a TID 1410 planar ROI group per box: the box as a closed POLYLINE SCOORD on the source image, the class
  as the finding type, the score, and width and height in mm when the pixel spacing is known;
- ``value``: a TID 1501 group with the value as a measurement (its unit as UCUM where medlens knows it, else as a
  UCUM annotation ``{unit}``).

Class names, structure names and the detection score have no code in a standard vocabulary: they are coded in the
private coding scheme :data:`SCHEME` (designators starting with 99 are private by PS3.16 8.2), with the name as
the code meaning. ``box_count`` findings are summaries of the boxes and are not repeated in the SR.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import Comprehensive3DSRStorage

from medlens.core.errors import InputError, MedlensError
from medlens.core.outputs import atomic_file
from medlens.io.dicom_type2 import with_type2_attributes

MANUFACTURER = "medlens"
SCHEME = "99MEDLENS"
SERIES_NUMBER = 9903
UCUM_UNITS = {"ml": ("ml", "milliliter"), "mm": ("mm", "millimeter"), "mm2": ("mm2", "square millimeter"),
              "mm3": ("mm3", "cubic millimeter"), "cm": ("cm", "centimeter"), "kg": ("kg", "kilogram"),
              "g": ("g", "gram"), "years": ("a", "year"), "year": ("a", "year"), "s": ("s", "second"),
              "%": ("%", "percent"), "": ("1", "no units")}  # fmt: skip


def dicom_sources(source: Path) -> list[Path]:
    """The DICOM files an input was read from: the file itself, or the files of the one series in a folder; empty
    when the input is not DICOM (or a folder holds several series)."""
    from medlens.io.dicom_series import find_series

    source = Path(source)
    if source.is_file():
        try:
            pydicom.dcmread(str(source), stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, AttributeError, TypeError):
            return []
        return [source]
    if not source.is_dir():
        return []
    try:
        series = find_series(source)
    except MedlensError:
        return []
    return [Path(p) for p in series[0].files] if len(series) == 1 else []


def write_dicom_sr(
    findings: Sequence[Mapping[str, Any]],
    source_files: Sequence[Path],
    path: Path,
    *,
    segmentation: Path | None = None,
    algorithm: str = "medlens",
    version: str = "unknown",
    series_description: str = "medlens measurement report",
) -> Path:
    """Write the findings about a DICOM input as a Comprehensive 3D SR (TID 1500), atomically.

    Args:
        findings: the model's findings (see :mod:`medlens.core.findings`).
        source_files: the DICOM files of the input (one picture, or every slice of the series).
        path: the output ``.dcm`` file.
        segmentation: the DICOM SEG of a segmentation, whose segments the volumes reference (needed for ``volume``).
        algorithm: the model's name (the algorithm identification of every measurement group).
        version: the model's version (its bundle's creation time).
        series_description: SeriesDescription of the new series.

    Raises:
        InputError: no source file, or findings the sources cannot carry (volumes without a SEG, boxes on a series).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not source_files:
        raise InputError(path, "a DICOM SR needs the DICOM files of its input")
    sources = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in source_files]
    seg = pydicom.dcmread(str(segmentation), stop_before_pixels=True) if segmentation is not None else None
    context = _Context(hd.sr.AlgorithmIdentification(name=algorithm[:64], version=version[:64]), sources, seg, path)
    groups: list[Any] = []
    kinds = {str(f.get("kind")) for f in findings}
    for finding in findings:
        kind = finding.get("kind")
        if kind == "volume":
            groups.append(context.volume(finding))
        elif kind == "area":
            groups.append(context.measurement(str(finding["structure"]), codes.SCT.Area, finding["value"], "mm2"))
        elif kind == "probability":
            groups.append(context.probability(finding))
        elif kind == "box":
            groups.append(context.box(finding))
        elif kind == "value":
            groups.append(context.measurement(str(finding["name"]), None, finding["value"], str(finding["unit"])))
    if "predicted_class" in kinds:
        groups += context.classification(findings)
    if not groups:
        raise InputError(path, f"no finding to report in a DICOM SR (kinds: {', '.join(sorted(kinds)) or 'none'})")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=algorithm[:64]
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    evidence = with_type2_attributes([*sources, *([seg] if seg is not None else [])], Comprehensive3DSRStorage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's advice on one-component person names
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description=series_description,
        )
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "medlens names of classes, structures and targets"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]  # a private scheme is declared where it is used (PS3.3 C.12.1)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())  # type: ignore[attr-defined]
    return path


def concept(name: str, meaning_prefix: str = "") -> Any:
    """A private coded concept for a name without a standard code (a class, a structure, a target)."""
    import highdicom as hd

    value = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:16]
    if value != name:  # shortened or changed: keep codes of different names apart
        value = value[:7] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return hd.sr.CodedConcept(value=value or "unnamed", scheme_designator=SCHEME, meaning=(meaning_prefix + name)[:64])


def unit_concept(unit: str) -> Any:
    """A UCUM unit: the code for units medlens knows, else the unit as a UCUM annotation (``{unit}`` is unity)."""
    import highdicom as hd

    known = UCUM_UNITS.get(unit.strip().lower())
    if known is None:
        text = re.sub(r"[{}]", "", unit.strip())[:14] or "unit"
        known = ("{" + text + "}", text)
    return hd.sr.CodedConcept(value=known[0], scheme_designator="UCUM", meaning=known[1])


class _Context:
    """What every measurement group of one report shares: the algorithm, the sources, the SEG."""

    def __init__(self, algorithm: Any, sources: list[Any], seg: Any, path: Path) -> None:
        self.algorithm, self.sources, self.seg, self.path = algorithm, sources, seg, path

    def _tracking(self, identifier: str) -> Any:
        import highdicom as hd

        return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=identifier[:64])

    def _source_images(self) -> list[Any]:
        import highdicom as hd

        return [hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in self.sources]

    def volume(self, finding: Mapping[str, Any]) -> Any:
        import highdicom as hd
        from pydicom.sr.codedict import codes

        if self.seg is None:
            raise InputError(self.path, "volumes in a DICOM SR reference a DICOM SEG, and none was written")
        structure = str(finding["structure"])
        segment = hd.sr.ReferencedSegment(
            sop_class_uid=self.seg.SOPClassUID,
            sop_instance_uid=self.seg.SOPInstanceUID,
            segment_number=int(finding["segment"]),
            source_series=hd.sr.SourceSeriesForSegmentation(self.sources[0].SeriesInstanceUID),
        )
        volume = hd.sr.Measurement(
            name=codes.SCT.Volume, value=float(finding["value"]), unit=unit_concept("ml"), algorithm_id=self.algorithm
        )
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(structure),
            referenced_segment=segment,
            finding_type=concept(structure),
            algorithm_id=self.algorithm,
            measurements=[volume],
        )

    def measurement(self, name: str, code: Any, value: float, unit: str) -> Any:
        import highdicom as hd

        measured = hd.sr.Measurement(
            name=code if code is not None else concept(name), value=float(value), unit=unit_concept(unit),
            algorithm_id=self.algorithm,
        )  # fmt: skip
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(name),
            finding_type=concept(name),
            algorithm_id=self.algorithm,
            measurements=[measured],
            source_images=self._source_images(),
        )

    def probability(self, finding: Mapping[str, Any]) -> Any:
        from pydicom.sr.codedict import codes

        return self.measurement(str(finding["class"]), codes.DCM.Probability, finding["probability"], "")

    def classification(self, findings: Sequence[Mapping[str, Any]]) -> list[Any]:
        """A group per predicted class (multi-label: per label; none: the finding ``none``), tracked as
        ``predicted class``, with the class as its finding (TID 1501's Finding) and the referral, when there is
        one, as a qualitative evaluation (yes or no)."""
        import highdicom as hd
        from pydicom.sr.codedict import codes

        labels: list[str] = []
        evaluations = []
        for finding in findings:
            if finding.get("kind") == "predicted_class":
                label = finding["label"]
                labels += [str(name) for name in (label if isinstance(label, list) else [label])]
            elif finding.get("kind") == "referral":
                referral = hd.sr.CodedConcept(value="referral", scheme_designator=SCHEME, meaning="Referral advised")
                value = codes.SCT.Yes if finding.get("refer") else codes.SCT.No
                evaluations.append(hd.sr.QualitativeEvaluation(name=referral, value=value))
        return [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=self._tracking("predicted class"),
                finding_type=concept(label),
                algorithm_id=self.algorithm,
                qualitative_evaluations=evaluations or None,
                source_images=self._source_images(),
            )
            for label in labels or ["none"]  # multi-label with no label at or above the threshold: none
        ]

    def box(self, finding: Mapping[str, Any]) -> Any:
        import highdicom as hd
        from pydicom.sr.codedict import codes

        if len(self.sources) != 1:
            raise InputError(self.path, f"boxes are drawn on one picture; the input has {len(self.sources)} images")
        source = self.sources[0]
        x0, y0, x1, y1 = (float(v) for v in finding["box"])
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)  # closed (column, row)
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=corners,
            source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID),
        )
        score = hd.sr.CodedConcept(value="score", scheme_designator=SCHEME, meaning="Detection score")
        measurements = [
            hd.sr.Measurement(
                name=score, value=float(finding["score"]), unit=unit_concept(""), algorithm_id=self.algorithm
            )
        ]
        if finding.get("unit") == "mm":
            for name, key in ((codes.SCT.Width, "width"), (codes.DCM.Height, "height")):
                measurements.append(
                    hd.sr.Measurement(name=name, value=float(finding[key]), unit=unit_concept("mm"),
                                      algorithm_id=self.algorithm)
                )  # fmt: skip
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(str(finding["class"])),
            referenced_region=region,
            finding_type=concept(str(finding["class"])),
            algorithm_id=self.algorithm,
            measurements=measurements,
        )
