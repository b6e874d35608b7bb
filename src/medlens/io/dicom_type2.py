"""Type 2 patient and study attributes that a source lacks, supplied empty for the DICOM objects derived from it.

A Type 2 attribute must be present in a DICOM object but may be empty when its value is unknown. Archives
de-identified by other tools often drop such attributes (PatientBirthDate, StudyID, ...) instead of emptying
them. highdicom builds a derived object's Patient and Study modules from its first source: ``Segmentation`` and
the SR documents read ``PatientID``, ``PatientName``, ``PatientBirthDate``, ``PatientSex``, ``AccessionNumber``,
``StudyID``, ``StudyDate`` and ``StudyTime`` as plain attributes (a source without one fails with
AttributeError), and then copy the root attributes of the source's Patient and Study modules only where the
source has them (``SOPClass.copy_patient_and_study_information``). The Secondary Capture's
``SCImage.from_ref_dataset`` reads the same attributes with ``getattr(..., None)``.

:func:`with_type2_attributes` gives every writer of a derived object (SEG, Secondary Capture, SR) sources that
carry each Type 2 attribute of those modules, empty where the source lacks it, so the writers do not fail and
the object is complete. Which attributes those are comes from the standard's module tables that highdicom ships,
not from a list typed here.

highdicom takes nothing else of Type 2 from a source that it does not already default: the derived object's
Manufacturer (General Equipment) is the writer's own, the source's goes into the Contributing Equipment Sequence
only when it has one, and the SEG's Position Reference Indicator is read with ``getattr(..., None)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from highdicom._standard_utils import (  # private, but the only machine-readable module tables at hand (pinned)
    AttributeTypeValues,
    ModuleUsageValues,
    get_iod_module_map,
    get_module_attribute_map,
    get_sop_class_iod_map,
)
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset

SHARED_ENTITIES = ("Patient", "Study")  # the information entities a derived object takes from its source


def type2_keywords(sop_class_uid: str, source: Dataset | None = None) -> tuple[str, ...]:
    """The Type 2 attributes at the root of the Patient and Study modules of a derived object's IOD.

    Args:
        sop_class_uid: the SOP class of the derived object (SEG, SR, Secondary Capture, ...).
        source: the source dataset; a user-optional module (Clinical Trial Subject, Patient Study, ...) counts
            only when the source carries one of its attributes, since only then is the module copied over.

    Example:
        >>> from pydicom.uid import SegmentationStorage
        >>> type2_keywords(SegmentationStorage)[:4]
        ('PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex')
    """
    modules = get_module_attribute_map()
    keywords: list[str] = []
    for module in get_iod_module_map()[get_sop_class_iod_map()[sop_class_uid]]:
        if module["ie"] not in SHARED_ENTITIES:
            continue
        root = [item for item in modules[module["key"]] if not item["path"]]
        if ModuleUsageValues(module["usage"]) != ModuleUsageValues.MANDATORY and not (
            source is not None and any(item["keyword"] in source for item in root)
        ):
            continue
        keywords += [
            item["keyword"]
            for item in root
            if AttributeTypeValues(item["type"]) == AttributeTypeValues.REQUIRED_EMPTY_IF_UNKNOWN
            and item["keyword"] not in keywords
        ]
    return tuple(keywords)


def with_type2_attributes(datasets: Sequence[Dataset], sop_class_uid: str) -> list[Dataset]:
    """The source datasets of a derived object, each with its missing Type 2 patient and study attributes empty.

    A dataset that lacks one is copied, so the caller's datasets are never changed; a complete one is returned
    as it is.

    Args:
        datasets: the source datasets (images for SEG, the referenced study's dataset for Secondary Capture,
            the evidence for SR).
        sop_class_uid: the SOP class of the derived object (see :func:`type2_keywords`).
    """
    completed = []
    for ds in datasets:
        missing = [keyword for keyword in type2_keywords(sop_class_uid, ds) if keyword not in ds]
        if missing:
            ds = copy.deepcopy(ds)  # a shallow copy would share (and change) the caller's element dictionary
            for keyword in missing:  # present with no value: Type 2 "unknown"
                vr = dictionary_VR(keyword)
                ds.add(DataElement(keyword, vr, empty_value_for_VR(vr)))
        completed.append(ds)
    return completed
