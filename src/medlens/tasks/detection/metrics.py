"""COCO-style detection metrics with bootstrap confidence intervals over images.

The point estimates follow pycocotools' ``COCOeval`` for boxes exactly (area range "all", no crowd regions):
per image and class, detections sorted by score and cut to ``max_dets`` are matched greedily to the unmatched
ground-truth box of highest IoU at or above each threshold; per class, all detections are sorted by score
(stable), precision is made monotone from the right and read at 101 recall points. The tests compare every
figure with pycocotools on the same predictions.

Written by hand (not a call to pycocotools or torchmetrics) because the bootstrap needs the metric under
many image weightings at once: matching is per image, so it is done once, and each resample only reweights
the matched detections (a row of image weights, as in :mod:`medlens.metrics.bootstrap`). A resample that
draws an image twice counts its detections twice at the same position in the ranking; pycocotools would
interleave the two copies, which can change a resample's AP by a tie-order detail, never the point estimate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from medlens.metrics.bootstrap import bootstrap_method, percentile_ci, resample_weights

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's .50:.05:.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100
_MAX_BLOCK = 2_000_000  # elements of one (resamples, detections) working array


@dataclass
class ImageBoxes:
    """Boxes of one image: ``boxes`` (N, 4) x1 y1 x2 y2 pixels, ``labels`` (N,), ``scores`` (N,) for predictions."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None


@dataclass
class ClassMatches:
    """One class's detections over all images, in COCO ranking order, with their matches."""

    image: np.ndarray  # (D,) image index of each detection
    score: np.ndarray  # (D,)
    tp: np.ndarray  # (T, D) bool: matched at each IoU threshold
    n_gt: np.ndarray  # (n_images,) ground-truth boxes per image


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1 y1 x2 y2 boxes (areas as w*h, as pycocotools computes them)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (A, B, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (A, B, 2)
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match_image(det: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy COCO matching of score-sorted detections to ground truth; (T, D) bool."""
    tp = np.zeros((len(thresholds), len(det)), dtype=bool)
    if len(det) == 0 or len(gt) == 0:
        return tp
    ious = box_iou(det, gt)  # (D, G)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt), dtype=bool)
        for d in range(len(det)):
            best, match = min(threshold, 1 - 1e-10), -1
            for g in range(len(gt)):  # as pycocotools: the last of equally good boxes wins
                if taken[g] or ious[d, g] < best:
                    continue
                best, match = ious[d, g], g
            if match >= 0:
                taken[match] = True
                tp[t, d] = True
    return tp


def match_class(
    predictions: list[ImageBoxes],
    truths: list[ImageBoxes],
    label: int,
    thresholds: np.ndarray = IOU_THRESHOLDS,
    max_dets: int = MAX_DETS,
) -> ClassMatches:
    """Match one class's detections in every image (the expensive step, done once per evaluation)."""
    images, scores, tps, n_gt = [], [], [], np.zeros(len(truths), dtype=np.int64)
    for i, (pred, truth) in enumerate(zip(predictions, truths, strict=True)):
        gt = truth.boxes[truth.labels == label]
        n_gt[i] = len(gt)
        keep = pred.labels == label
        det, score = pred.boxes[keep], (pred.scores if pred.scores is not None else np.ones(len(pred.labels)))[keep]
        order = np.argsort(-score, kind="mergesort")[:max_dets]
        images.append(np.full(len(order), i))
        scores.append(score[order])
        tps.append(_match_image(det[order], gt, thresholds))
    score_all = np.concatenate(scores) if scores else np.zeros(0)
    rank = np.argsort(-score_all, kind="mergesort")
    tp_all = np.concatenate(tps, axis=1) if tps else np.zeros((len(thresholds), 0), dtype=bool)
    image_all = np.concatenate(images).astype(np.int64) if images else np.zeros(0, dtype=np.int64)
    return ClassMatches(image_all[rank], score_all[rank], tp_all[:, rank], n_gt)


def weighted_ap_recall(matches: ClassMatches, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO AP and recall per IoU threshold under each row of image weights.

    Args:
        matches: from :func:`match_class`.
        weights: ``(b, n_images)`` image weights (all ones for the data as it is).

    Returns:
        ``(ap, recall)``, each ``(b, T)``; NaN where a row has no ground-truth box of this class.
    """
    rows = max(1, _MAX_BLOCK // max(matches.tp.shape[1], 1))  # bound the (rows, D) working arrays
    if len(weights) > rows:
        parts = [weighted_ap_recall(matches, weights[i : i + rows]) for i in range(0, len(weights), rows)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    w = weights.astype(np.float64)
    n_pos = w @ matches.n_gt.astype(np.float64)  # (b,)
    b, n_t, n_det = len(w), matches.tp.shape[0], matches.tp.shape[1]
    ap = np.zeros((b, n_t))
    recall = np.zeros((b, n_t))
    if n_det:
        dw = w[:, matches.image]  # (b, D) weight of each detection
        safe_pos = np.where(n_pos > 0, n_pos, 1.0)[:, None]
        offsets = 4.0 * np.arange(b)[:, None]  # rows shifted apart so one searchsorted serves all of them
        for t in range(n_t):
            tp = np.cumsum(dw * matches.tp[t], axis=1)  # (b, D)
            fp = np.cumsum(dw * ~matches.tp[t], axis=1)
            rc = tp / safe_pos
            pr = tp / (tp + fp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope, as pycocotools
            if b == 1:
                index = np.searchsorted(rc[0], RECALL_POINTS, side="left")[None, :]  # (1, R)
            else:
                flat = (rc + offsets).ravel()
                index = np.searchsorted(flat, (RECALL_POINTS[None, :] + offsets).ravel(), side="left")
                index = index.reshape(b, -1) - n_det * np.arange(b)[:, None]  # (b, R)
            valid = index < n_det
            q = np.where(valid, np.take_along_axis(pr, np.minimum(index, n_det - 1), axis=1), 0.0)
            ap[:, t] = q.mean(axis=1)
            recall[:, t] = rc[:, -1]
    ap[n_pos == 0] = np.nan
    recall[n_pos == 0] = np.nan
    return ap, recall


def detection_metrics(
    predictions: list[ImageBoxes],
    truths: list[ImageBoxes],
    class_names: list[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    max_dets: int = MAX_DETS,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """mAP@[.5:.95], mAP@.5, mAP@.75, AR@``max_dets`` and per-class AP, each ``{"value", "ci95"}``.

    Confidence intervals are 95% percentile intervals over ``n_bootstrap`` resamples of the images (of the
    patients, with ``groups``: :func:`~medlens.metrics.bootstrap.group_index`).
    ``_curves`` holds each class's precision-recall curve at IoU 0.5 (for the report).

    Example:
        >>> gt = [ImageBoxes(np.array([[0, 0, 10, 10.]]), np.array([0]))]
        >>> pred = [ImageBoxes(np.array([[0, 0, 10, 9.]]), np.array([0]), np.array([0.9]))]
        >>> round(detection_metrics(pred, gt, ["cell"], n_bootstrap=0)["map50"]["value"], 3)
        1.0
    """
    n_images = len(truths)
    matches = [match_class(predictions, truths, k, max_dets=max_dets) for k in range(len(class_names))]
    point = [weighted_ap_recall(m, np.ones((1, n_images))) for m in matches]
    ap = np.stack([p[0][0] for p in point])  # (K, T)
    rec = np.stack([p[1][0] for p in point])  # (K, T)
    samples: dict[str, list[np.ndarray]] = {}
    for block in resample_weights(n_images, n_bootstrap, seed, groups) if n_bootstrap else []:
        pairs = [weighted_ap_recall(m, block) for m in matches]
        b_ap = np.stack([p[0] for p in pairs], axis=1)  # (b, K, T)
        b_rec = np.stack([p[1] for p in pairs], axis=1)
        for key, values in _summaries(b_ap, b_rec, class_names).items():
            samples.setdefault(key, []).append(values)
    metrics: dict[str, Any] = {}
    for key, value in _summaries(ap[None], rec[None], class_names).items():
        drawn = np.concatenate(samples[key]) if key in samples else np.zeros(0)
        ci, note = percentile_ci(drawn) if n_bootstrap else ([None, None], "")
        entry: dict[str, Any] = {"value": None if np.isnan(value[0]) else float(value[0]), "ci95": ci}
        if note:
            entry["note"] = note
        name, _, cls = key.partition("/")
        if cls:
            metrics.setdefault(name, {})[cls] = entry
        else:
            metrics[name] = entry
    metrics["n_images"] = n_images
    metrics["n_boxes"] = {n: int(m.n_gt.sum()) for n, m in zip(class_names, matches, strict=True)}
    metrics["n_bootstrap"] = n_bootstrap
    metrics["bootstrap"] = {"n_resamples": n_bootstrap, "seed": seed, "method": "95% percentile interval",
                            **bootstrap_method(groups, n_images)}  # fmt: skip
    metrics["_curves"] = {n: pr_curve(m) for n, m in zip(class_names, matches, strict=True)}
    return metrics


def _summaries(ap: np.ndarray, rec: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """Headline figures from per-class, per-threshold AP and recall ``(b, K, T)``; each value ``(b,)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # a class without boxes in a resample is NaN
        out = {
            "map": np.nanmean(ap, axis=(1, 2)),
            "map50": np.nanmean(ap[:, :, 0], axis=1),
            "map75": np.nanmean(ap[:, :, 5], axis=1),
            f"mar{MAX_DETS}": np.nanmean(rec, axis=(1, 2)),
        }
        for k, name in enumerate(class_names):
            out[f"ap_per_class/{name}"] = np.nanmean(ap[:, k], axis=1)
            out[f"ap50_per_class/{name}"] = ap[:, k, 0]
            out[f"ap75_per_class/{name}"] = ap[:, k, 5]
    return out


def pr_curve(matches: ClassMatches) -> dict[str, list[float]]:
    """Precision (raw, not the envelope) against recall at IoU 0.5, for plotting."""
    n_pos = max(int(matches.n_gt.sum()), 1)
    tp = np.cumsum(matches.tp[0])
    fp = np.cumsum(~matches.tp[0])
    return {
        "recall": (tp / n_pos).round(5).tolist(),
        "precision": (tp / np.maximum(tp + fp, 1)).round(5).tolist(),
        "score": matches.score.round(5).tolist(),
    }


def misses_per_image(
    predictions: list[ImageBoxes], truths: list[ImageBoxes], n_classes: int, score_threshold: float, iou: float = 0.5
) -> np.ndarray:
    """Ground-truth boxes per image not found (same class, IoU >= ``iou``) by detections above the threshold."""
    kept = []
    for p in predictions:
        keep = p.scores >= score_threshold if p.scores is not None else np.ones(len(p.labels), dtype=bool)
        kept.append(ImageBoxes(p.boxes[keep], p.labels[keep], None if p.scores is None else p.scores[keep]))
    missed = np.zeros(len(truths), dtype=np.int64)
    for k in range(n_classes):
        m = match_class(kept, truths, k, thresholds=np.array([iou]), max_dets=10**6)
        found = np.bincount(m.image[m.tp[0]], minlength=len(truths))
        missed += m.n_gt - found
    return missed


def choose_score_threshold(predictions: list[ImageBoxes], truths: list[ImageBoxes], n_classes: int) -> float:
    """The score threshold with the best F1 at IoU 0.5 over all classes (the operating point for outputs)."""
    tp_scores, fp_scores, n_gt = [], [], 0
    for k in range(n_classes):
        m = match_class(predictions, truths, k, thresholds=np.array([0.5]), max_dets=MAX_DETS)
        tp_scores.append(m.score[m.tp[0]])
        fp_scores.append(m.score[~m.tp[0]])
        n_gt += int(m.n_gt.sum())
    tps, fps = np.concatenate(tp_scores), np.concatenate(fp_scores)
    candidates = np.unique(np.concatenate([tps, fps]))
    if not len(candidates) or n_gt == 0:
        return 0.5
    tp = len(tps) - np.searchsorted(np.sort(tps), candidates, side="left")  # detections >= each candidate
    fp = len(fps) - np.searchsorted(np.sort(fps), candidates, side="left")
    f1 = 2 * tp / (2 * tp + fp + (n_gt - tp))
    return float(candidates[int(np.argmax(f1))])


def operating_point(
    predictions: list[ImageBoxes], truths: list[ImageBoxes], n_classes: int, score_threshold: float, iou: float = 0.5
) -> dict[str, Any]:
    """Precision, recall and F1 at IoU ``iou`` of the detections scoring at least ``score_threshold``."""
    tp = fp = n_gt = 0
    per_class = []
    for k in range(n_classes):
        m = match_class(predictions, truths, k, thresholds=np.array([iou]), max_dets=10**6)
        above = m.score >= score_threshold
        k_tp, k_fp, k_gt = int((m.tp[0] & above).sum()), int((~m.tp[0] & above).sum()), int(m.n_gt.sum())
        per_class.append(_rates(k_tp, k_fp, k_gt))
        tp, fp, n_gt = tp + k_tp, fp + k_fp, n_gt + k_gt
    return {"score_threshold": score_threshold, "iou": iou, **_rates(tp, fp, n_gt), "per_class": per_class}


def _rates(tp: int, fp: int, n_gt: int) -> dict[str, Any]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / n_gt if n_gt else None
    f1 = 2 * tp / (2 * tp + fp + (n_gt - tp)) if (2 * tp + fp + n_gt - tp) else None
    return {"tp": tp, "fp": fp, "fn": n_gt - tp, "precision": precision, "recall": recall, "f1": f1}
