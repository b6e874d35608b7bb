"""A detector's answer for one picture: boxes in the picture's own pixels, with class and score.

Every member detects without NMS; their boxes are pooled and suppressed class by class (the validation-chosen
IoU), so ``boxes`` holds what scores at least the operating score and ``candidates`` everything above the
evaluation score (what COCO metrics rank).

Uncertainty per box: its ``score`` (the detector's confidence), and ``member_agreement``, the share of members that
found the same object on their own (a box of the same class at or above the operating score overlapping it by IoU
at least :data:`AGREEMENT_IOU`); 1.0 with one member, lower where seeds or folds disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import InputError
from medlens.core.image import Image
from medlens.core.prediction import Prediction, SaveOptions
from medlens.tasks.detection.metrics import ImageBoxes

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

#: the overlap at which a member's own box counts as the same object
AGREEMENT_IOU = 0.5


@dataclass(kw_only=True)
class DetectionPrediction(Prediction):
    """Boxes found in one 2D picture.

    Attributes:
        candidates: every merged box above the evaluation score (x1, y1, x2, y2 pixels; labels 0..K-1; scores).
        score_threshold: the operating score (chosen on validation); ``boxes`` are the candidates at or above it.
        class_names: the classes, in label order.
        image_size: (height, width) of the picture.
        pixels: the picture (C, H, W) as read, for overlays (not serialised).
        agreement: per candidate, the share of members that found it (see the module notes); None: not measured.
        pixel_spacing_mm: (between rows, between columns) in mm when the picture's file records it, else None.
    """

    task = "detection"
    candidates: ImageBoxes
    score_threshold: float
    class_names: list[str]
    image_size: tuple[int, int]
    pixels: np.ndarray = field(repr=False)
    agreement: np.ndarray | None = field(default=None, repr=False)
    pixel_spacing_mm: tuple[float, float] | None = None

    def _keep(self) -> np.ndarray:
        c = self.candidates
        return c.scores >= self.score_threshold if c.scores is not None else np.ones(len(c.labels), bool)

    @property
    def kept(self) -> ImageBoxes:
        c, keep = self.candidates, self._keep()
        return ImageBoxes(c.boxes[keep], c.labels[keep], None if c.scores is None else c.scores[keep])

    @property
    def boxes(self) -> list[dict[str, Any]]:
        """``{"label", "score", "member_agreement", "box": [x0, y0, x1, y1]}`` per box at or above the operating
        score (``member_agreement``: the share of members that found the box; 1.0 with one member)."""
        k = self.kept
        scores = k.scores if k.scores is not None else np.ones(len(k.labels))
        agreement = self.agreement[self._keep()] if self.agreement is not None else np.full(len(k.labels), np.nan)
        return [
            {"label": self.class_names[int(label)], "score": round(float(s), 5),
             "member_agreement": None if np.isnan(a) else round(float(a), 4), "box": [round(float(v), 2) for v in b]}
            for b, label, s, a in zip(k.boxes, k.labels, scores, agreement, strict=True)
        ]  # fmt: skip

    def fields(self) -> dict[str, Any]:
        return {"boxes": self.boxes, "score_threshold": self.score_threshold, "image_size": list(self.image_size)}

    def table_row(self) -> dict[str, Any]:
        labels = self.kept.labels
        counts = {f"n_{n}": int((labels == k).sum()) for k, n in enumerate(self.class_names)}
        return {"input": self.source, "n_boxes": len(labels), **counts}

    def caption(self) -> list[str]:
        labels = self.kept.labels
        counts = [f"{name} {int((labels == k).sum())}" for k, name in enumerate(self.class_names)]
        return [f"{len(labels)} boxes at score >= {self.score_threshold:.2f}: " + ", ".join(counts)]

    def picture(self, image: Image) -> np.ndarray | None:
        from medlens.reports.pictures import boxes_picture

        k = self.kept
        return boxes_picture(self.pixels, k.boxes, list(k.labels), k.scores, self.class_names)

    def save_files(self, folder: Path, stem: str, options: SaveOptions) -> dict[str, str]:
        if not options.pictures:
            return {}
        from medlens.reports.pictures import boxes_png

        k = self.kept
        path = folder / f"{stem}.png"
        path.write_bytes(boxes_png(self.pixels, k.boxes, list(k.labels), k.scores, self.class_names))
        return {"overlay": path.name}


SPACING_FORMATS = ("dicom", "nifti", "nrrd", "mha", "mhd")  # files that record their pixel spacing


def pixel_spacing(image: Image) -> tuple[float, float] | None:
    """The picture's pixel spacing (between rows, between columns) in mm when its file records one (DICOM
    PixelSpacing or ImagerPixelSpacing, a volume's geometry); None for pictures such as PNG or JPEG, whose pixels
    have no size."""
    if image.meta.get("source_format") not in SPACING_FORMATS or image.meta.get("pixel_spacing_assumed"):
        return None
    row, col = image.as_2d().spacing[:2]
    return (round(row, 6), round(col, 6))


def image_tensor(array: np.ndarray, channels: int, source: str) -> Any:
    """A (C, H, W) picture with ``channels`` channels: gray repeated, colour averaged, others rejected."""
    import torch

    if array.ndim != 3:
        raise InputError(source, f"expected a 2D picture, got an array of shape {array.shape}")
    image = torch.from_numpy(np.ascontiguousarray(array))
    if image.dtype not in (torch.uint8, torch.float32):
        image = image.float()
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return image.expand(channels, -1, -1).clone()
    if channels == 1:
        return image.float().mean(dim=0, keepdim=True)
    raise InputError(source, f"{image.shape[0]} channels, the model takes {channels}")


def detect(bundle: Bundle, images: Sequence[Image]) -> list[DetectionPrediction]:
    """Detect objects in pictures given as read (any size, raw units); boxes in their own pixels."""
    from medlens.tasks.detection.module import detect_raw, merge, to_image_boxes

    plan = bundle.plan
    d = plan.detection  # type: ignore[attr-defined]
    tensors = []
    for image in images:
        picture = image.as_2d()
        source = str(image.meta.get("source", "<memory>"))
        if picture.spatial_dims != 2:
            raise InputError(source, f"a {picture.spatial_dims}D image; this detector takes 2D images")
        tensors.append(image_tensor(picture.array, plan.data.channels, source))
    raw = [detect_raw(net, tensors) for net in bundle.networks()]  # (members, images)
    score = float(bundle.threshold if bundle.threshold is not None else 0.5)
    out = []
    for i, (image, tensor) in enumerate(zip(images, tensors, strict=True)):
        merged = merge([r[i] for r in raw], d.nms_iou, d.detections_per_image)
        agreement = member_agreement(merged, [r[i] for r in raw], score)
        out.append(
            DetectionPrediction(
                model=bundle.name,
                source=str(image.meta.get("source", "<memory>")),
                flags=list(image.meta.get("flags", [])),
                candidates=to_image_boxes(merged),
                score_threshold=score,
                class_names=list(bundle.class_names),
                image_size=(int(tensor.shape[1]), int(tensor.shape[2])),
                pixels=tensor.numpy(),
                agreement=agreement,
                pixel_spacing_mm=pixel_spacing(image),
            )
        )
    return out


def member_agreement(merged: dict[str, Any], raw: Sequence[dict[str, Any]], score: float) -> np.ndarray:
    """Per merged box, the share of members with a box of its class, scoring at least ``score``, that overlaps it by
    IoU >= :data:`AGREEMENT_IOU`; ``(D,)``."""
    import torch
    from torchvision.ops import box_iou

    found = torch.zeros(len(merged["boxes"]))
    for member in raw:
        mine = (member["scores"] >= score) & (member["labels"] > 0)
        if not len(merged["boxes"]) or not bool(mine.any()):
            continue
        iou = box_iou(merged["boxes"].float(), member["boxes"][mine].float())  # (D, own)
        same = merged["labels"][:, None] == member["labels"][mine][None, :]  # (D, own)
        found += ((iou >= AGREEMENT_IOU) & same).any(dim=1).float()
    return (found / max(len(raw), 1)).numpy()


def coco_results(predictions: Sequence[DetectionPrediction], names: Sequence[str]) -> list[dict[str, Any]]:
    """Candidates in COCO's results format; ``image_id`` counts from 1 in input order, ``category_id`` from 1."""
    rows = []
    for image_id, (pred, name) in enumerate(zip(predictions, names, strict=True), start=1):
        c = pred.candidates
        for box, label, score in zip(c.boxes, c.labels, c.scores if c.scores is not None else [], strict=True):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            bbox = [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]
            rows.append({"image_id": image_id, "file": name, "category_id": int(label) + 1, "bbox": bbox,
                         "score": round(float(score), 5)})  # fmt: skip
    return rows


def write_batch_outputs(folder: Path, predictions: Sequence[Prediction]) -> None:
    """``coco_results.json`` (every candidate, COCO format) and ``images.json`` (its image ids)."""
    preds = [p for p in predictions if isinstance(p, DetectionPrediction)]
    names = [p.source for p in preds]
    (folder / "coco_results.json").write_text(json.dumps(coco_results(preds, names)))
    (folder / "images.json").write_text(json.dumps([{"id": i, "file": n} for i, n in enumerate(names, 1)], indent=2))
