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

# Integration points with calibration (the names its predictions use):
REFERRAL_KEY = "refer"  # the referral flag (a prediction field, or a key of its uncertainty)
REFERRAL_LIMIT_KEY = "referral_threshold"  # the confidence cut behind it (None: the bundle has no referral)
UNCERTAINTY_FIELDS = ("refer", "prediction_set")  # prediction fields that belong with its uncertainty
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
    ``uncertainty`` key of ``prediction.to_dict()``; the prediction's own fields named in
    :data:`UNCERTAINTY_FIELDS` (the referral flag, the conformal prediction set) join it. Values that are ``None``
    are left out, and so is a ``False`` referral flag from a bundle without a referral threshold (it refers nothing
    because it cannot: not assessed, which is not the same as no referral).
    """
    data = prediction.to_dict()
    value = getattr(prediction, "uncertainty", None)
    if value is None:
        value = data.get("uncertainty")
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    merged = dict(value) if isinstance(value, dict) else {}
    for name in UNCERTAINTY_FIELDS:
        if name not in merged and data.get(name) is not None:
            merged[name] = data[name]
    if merged.get(REFERRAL_KEY) is False and merged.get(REFERRAL_LIMIT_KEY) is None:
        del merged[REFERRAL_KEY]  # no known cut: not assessed
    kept = {str(k): v for k, v in merged.items() if v is not None}
    return kept or None


def referral_of(uncertainty: dict[str, Any] | None) -> bool | None:
    """Whether the model asks for a specialist's read of this case (:func:`uncertainty_of`'s flag); None when it
    was not assessed."""
    if not uncertainty or REFERRAL_KEY not in uncertainty:
        return None
    return bool(uncertainty[REFERRAL_KEY])
