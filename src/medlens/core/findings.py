"""What a model found in one input, as plain JSON-ready items: the shared vocabulary of the clinical report, its
texts and the DICOM SR.

Every task turns its prediction into a list of findings (:meth:`medlens.tasks.base.Task.findings`); the report
(:mod:`medlens.reports.clinical`), its sentence templates and the SR writer (:mod:`medlens.io.dicom_sr`) read
findings by their ``kind`` and never by task name, so a new task that speaks this vocabulary gets reports and SR
for free. A finding is a mapping with ``kind`` and the keys of its kind:

==================  ==========================================================================================
kind                keys
==================  ==========================================================================================
``probability``     ``class``, ``probability`` (0 to 1): one per class
``predicted_class`` ``label`` (a class, or a list of labels for multi-label), ``threshold`` (None: arg-max)
``referral``        ``refer`` (bool: the model's own uncertainty asks for a specialist's read)
``volume``          ``structure``, ``segment`` (label index = DICOM SEG segment number), ``value``, ``unit``
                    (``mL``), ``voxels`` (count), ``voxel_volume_ml``
``area``            as ``volume`` for a 2D label map: ``value`` in ``mm2``, ``pixels``, ``pixel_area_mm2``
``box``             ``class``, ``score``, ``box`` (x0, y0, x1, y1 in the input's pixels), ``width``, ``height``,
                    ``unit`` (``mm`` when the pixel spacing is known, else ``px``)
``box_count``       ``class``, ``count``: boxes of that class at the operating score
``value``           ``name``, ``value``, ``unit`` (a regression's estimate)
==================  ==========================================================================================

Numbers are rounded once, here in the findings, so the texts (which print them as they are) and the JSON agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

REFERRAL_KEY = "refer"  # integration point: the key of the referral flag in a prediction's uncertainty
KINDS = ("probability", "predicted_class", "referral", "volume", "area", "box", "box_count", "value")
DIGITS = 4  # decimals of probabilities and scores in findings


def rounded(value: float, digits: int = DIGITS) -> float:
    """``value`` rounded for a report (``-0.0`` made ``0.0``)."""
    return round(float(value), digits) + 0.0


def uncertainty_of(prediction: Any) -> dict[str, Any] | None:
    """The prediction's uncertainty as a JSON-ready mapping, or None when the prediction carries none.

    Integration point: calibration adds uncertainty to predictions (entropy, member disagreement, a referral flag,
    a conformal set; a case score and a voxel map for segmentation). It is read here, and only here, as the
    prediction's ``uncertainty`` attribute (a mapping, a dataclass, or an object with ``to_dict()``), else as the
    ``uncertainty`` key of ``prediction.to_dict()``. Values that are ``None`` are left out.
    """
    value = getattr(prediction, "uncertainty", None)
    if value is None:
        value = prediction.to_dict().get("uncertainty")
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, dict):
        return None
    kept = {str(k): v for k, v in value.items() if v is not None}
    return kept or None
