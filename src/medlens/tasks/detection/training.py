"""The detector's thresholds, chosen on validation after training.

The NMS IoU with the best validation mAP@.5 (then mAP) is kept, then the operating score with the best F1 at
IoU 0.5. Each validation image is detected by the members that validated it (seeds: every member on the val
split, their boxes pooled before NMS; folds: the member that held it out).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from medlens.tasks.base import Calibration
from medlens.tasks.detection.config import DetectionPlan
from medlens.tasks.detection.loading import BoxCases
from medlens.training.members import Member

log = logging.getLogger(__name__)


def calibrate(
    plan: DetectionPlan, nets: Sequence[nn.Module], members: Sequence[Member], prepared: BoxCases
) -> Calibration:
    from medlens.tasks.detection.metrics import ImageBoxes, choose_score_threshold, detection_metrics
    from medlens.tasks.detection.module import detect_raw, merge, to_image_boxes

    d = plan.detection
    raw: dict[str, list[Any]] = defaultdict(list)  # case id -> every validating member's raw detections
    for net, member in zip(nets, members, strict=True):
        items = prepared.of(member.val)
        for item, out in zip(items, detect_raw(net, [i.image for i in items]), strict=True):
            raw[item.case_id].append(out)
    ids = sorted(raw)
    truths = [
        ImageBoxes(prepared.items[i].boxes.numpy().astype(np.float64), prepared.items[i].labels.numpy()) for i in ids
    ]
    results = []
    for iou in sorted(set(d.nms_candidates) | {d.nms_iou}):
        preds = [to_image_boxes(merge(raw[i], iou, d.detections_per_image)) for i in ids]
        m = detection_metrics(preds, truths, plan.class_names, n_bootstrap=0)
        key = (m["map50"]["value"] or 0.0, m["map"]["value"] or 0.0, -abs(iou - 0.5))  # ties: nearest to 0.5
        log.info("validation with NMS IoU %.2f: mAP@.5 %.4f, mAP %.4f", iou, key[0], key[1])
        results.append((key, iou, preds))
    best, best_iou, best_preds = max(results, key=lambda r: r[0])
    score = d.score_threshold
    if score is None:
        score = round(choose_score_threshold(best_preds, truths, len(plan.class_names)), 4)
    chosen = {"nms_iou": float(best_iou), "score_threshold": float(score)}
    final = plan.model_copy(update={"detection": d.model_copy(update=chosen)})
    val = {"map50": best[0], "map": best[1]}
    return Calibration(
        final,
        threshold=float(score),
        info={"val_map50": val["map50"], "val_map": val["map"]},
        summary={"val_after_threshold_choice": val, **chosen},
        worst_cases=_worst_validation_cases(ids, best_preds, truths, len(plan.class_names), float(score)),
    )


def _worst_validation_cases(
    ids: list[str], preds: list[Any], truths: list[Any], n_classes: int, score: float
) -> list[dict[str, Any]]:
    """Validation images with the most objects missed at the operating score (IoU 0.5)."""
    from medlens.metrics.cases import worst_cases
    from medlens.tasks.detection.metrics import misses_per_image

    missed = misses_per_image(preds, truths, n_classes, score)
    counts = [{"objects": len(t.labels)} for t in truths]
    return worst_cases(ids, missed.tolist(), metric="objects missed", higher_is_worse=True, details=counts)
