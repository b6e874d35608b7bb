"""A detection in the report's vocabulary: each box at the operating score with its class, score and size (in mm
when the picture's pixel spacing is known, else in pixels, and the finding says which), and the count per class."""

from __future__ import annotations

from typing import Any

from medlens.core.findings import rounded
from medlens.tasks.detection.prediction import DetectionPrediction

SIZE_DIGITS = 2  # decimals of box sizes (mm or pixels), as of the box coordinates


def detection_findings(prediction: DetectionPrediction, bundle: object = None) -> list[dict[str, Any]]:
    """``box`` per box kept at the operating score (highest score first), then ``box_count`` per class.

    ``bundle`` is the task contract's second argument; this task's findings need nothing from it.
    """
    spacing = prediction.pixel_spacing_mm  # (between rows, between columns) or None
    unit = "mm" if spacing is not None else "px"
    row_mm, col_mm = spacing if spacing is not None else (1.0, 1.0)
    boxes = sorted(prediction.boxes, key=lambda b: -b["score"])
    items: list[dict[str, Any]] = []
    for box in boxes:
        x0, y0, x1, y1 = box["box"]
        items.append(
            {"kind": "box", "class": box["label"], "score": rounded(box["score"]), "box": box["box"],
             "width": rounded((x1 - x0) * col_mm, SIZE_DIGITS), "height": rounded((y1 - y0) * row_mm, SIZE_DIGITS),
             "unit": unit}
        )  # fmt: skip
        if box.get("member_agreement") is not None:  # the share of members that found it (calibration's field)
            items[-1]["member_agreement"] = rounded(box["member_agreement"])
    for name in prediction.class_names:
        count = sum(1 for b in boxes if b["label"] == name)
        threshold = rounded(prediction.score_threshold)
        items.append({"kind": "box_count", "class": name, "count": count, "score_threshold": threshold})
    return items
