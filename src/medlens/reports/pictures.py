"""Pictures a person looks at: an image with its label map blended in, or with boxes drawn on it.

Planes are rendered through the image's display window (:func:`medlens.io.writers.render`); a 3D label map is
shown on the slice where it has the most foreground.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medlens.core.image import Image
from medlens.reports.figures import array_png, colour, palette_rgb


def busiest_slice(labels: np.ndarray) -> int | None:
    """The slice index (last axis) with the most foreground of a 3D label map; None for 2D."""
    if labels.ndim != 3:
        return None
    counts = (labels > 0).reshape(-1, labels.shape[2]).sum(0)
    return int(np.argmax(counts)) if counts.any() else labels.shape[2] // 2


def label_overlay(image: Image, labels: np.ndarray, slice_index: int | None = None, alpha: float = 0.45) -> np.ndarray:
    """An RGB picture (H, W, 3) uint8 of one plane with the label colours blended in (class k: colour k-1)."""
    from medlens.io.writers import render, rendered_slice

    grey = render(Image(image.array[:1], image.affine, meta=dict(image.meta)), slice_index=slice_index)
    plane = rendered_slice(Image(labels[None], image.affine, kind="label"), slice_index)[0]  # (H, W)
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=2) if grey.ndim == 2 else grey[..., :3].astype(float)
    colours = palette_rgb()
    painted = colours[(plane.astype(int) - 1) % len(colours)]
    mask = (plane > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * painted, rgb).clip(0, 255).astype(np.uint8)


def label_overlay_png(image: Image, labels: np.ndarray) -> bytes:
    """PNG of :func:`label_overlay` on the busiest slice."""
    return array_png(label_overlay(image, labels, busiest_slice(labels)))


def side_by_side_png(image: Image, left: np.ndarray, right: np.ndarray) -> bytes:
    """Two label maps (truth, prediction) over the image, side by side on the left map's busiest slice."""
    k = busiest_slice(left)
    a, b = label_overlay(image, left, k), label_overlay(image, right, k)
    gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
    return array_png(np.concatenate([a, gap, b], axis=1))


def boxes_png(
    pixels: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float] | np.ndarray | None,
    class_names: Sequence[str],
    truth: np.ndarray | None = None,
) -> bytes:
    """PNG of :func:`boxes_picture`."""
    return array_png(boxes_picture(pixels, boxes, labels, scores, class_names, truth))


def boxes_picture(
    pixels: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float] | np.ndarray | None,
    class_names: Sequence[str],
    truth: np.ndarray | None = None,
) -> np.ndarray:
    """A 2D picture (C, H, W) in any range as RGB (H, W, 3) uint8 with boxes in class colours (label and score
    written above each) and, when given, true boxes (N, 4) dashed in white."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    array = pixels.astype(np.float32)
    if array.shape[0] != 3:
        array = np.repeat(array[:1], 3, axis=0)
    lo, hi = float(array.min()), float(array.max())
    if pixels.dtype == np.uint8 or (lo >= 0 and hi <= 255):
        lo, hi = 0.0, 255.0
    rgb = ((array - lo) / max(hi - lo, 1e-6) * 255).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
    picture = PILImage.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(picture)
    for box in truth if truth is not None else []:
        x1, y1, x2, y2 = (float(v) for v in box)
        for start in range(int(x1), int(x2), 8):  # dashed by hand: PIL draws no dashed lines
            draw.line([(start, y1), (min(start + 4, x2), y1)], fill="white", width=2)
            draw.line([(start, y2), (min(start + 4, x2), y2)], fill="white", width=2)
        for start in range(int(y1), int(y2), 8):
            draw.line([(x1, start), (x1, min(start + 4, y2))], fill="white", width=2)
            draw.line([(x2, start), (x2, min(start + 4, y2))], fill="white", width=2)
    shown = scores if scores is not None else [1.0] * len(labels)
    for box, label, score in zip(boxes, labels, shown, strict=True):
        ink = colour(int(label))
        draw.rectangle([float(v) for v in box], outline=ink, width=2)
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{class_names[int(label)]} {score:.2f}", fill=ink)
    return np.asarray(picture.convert("RGB"))


def _heat_plane(image: Image, heat: np.ndarray, axis: int | None, index: int | None, alpha: float) -> np.ndarray:
    """One plane (RGB uint8) of the image with the positive part of ``heat`` blended in through the turbo colour map;
    ``axis`` is the fixed index axis of a 3D image (None for 2D)."""
    from matplotlib import colormaps

    from medlens.io.writers import render

    if axis is None:
        grey, plane = render(image), heat
    else:
        order = [a for a in range(3) if a != axis] + [axis]  # the fixed axis last, as rendered_slice expects
        moved = Image(image.array.transpose(0, *[a + 1 for a in order]), image.affine, meta=dict(image.meta))
        grey = render(moved, slice_index=index)
        plane = heat.transpose(order)[:, :, index].T  # (H, W) as rendered_slice shows it
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=2) if grey.ndim == 2 else grey[..., :3].astype(float)
    positive = np.clip(np.nan_to_num(plane.astype(np.float64)), 0, None)
    top = float(positive.max()) if positive.size else 0.0
    weight = (positive / top if top > 0 else positive)[..., None] * alpha  # (H, W, 1)
    painted = colormaps["turbo"](positive / top if top > 0 else positive)[..., :3] * 255.0
    return ((1 - weight) * rgb + weight * painted).clip(0, 255).astype(np.uint8)


def heatmap_overlay(image: Image, heat: np.ndarray, alpha: float = 0.6, min_size: int = 256) -> np.ndarray:
    """An explanation map over its image, as an RGB picture (H, W, 3) uint8: a 2D picture as it is; a volume as its
    planes through the map's peak voxel side by side (each fixed index axis in turn, planes of one voxel left out).
    Small pictures are enlarged by whole pixels (nearest neighbour) until their longer side reaches ``min_size``."""
    if heat.ndim == 2:
        return _enlarged(_heat_plane(image, heat, None, None, alpha), min_size)
    peak = np.unravel_index(int(np.argmax(np.nan_to_num(heat, nan=-np.inf))), heat.shape)
    shape = heat.shape
    axes = [a for a in (2, 1, 0) if all(shape[b] > 1 for b in range(3) if b != a)] or [2]
    planes = [_heat_plane(image, heat, a, int(peak[a]), alpha) for a in axes]
    height = max(p.shape[0] for p in planes)
    gap = np.full((height, 4, 3), 255, np.uint8)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in planes]
    parts = [part for p in padded for part in (p, gap)][:-1]
    return _enlarged(np.concatenate(parts, axis=1), min_size)


def _enlarged(picture: np.ndarray, min_size: int) -> np.ndarray:
    factor = max(1, -(-min_size // max(picture.shape[:2])))  # ceiling division
    return picture.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else picture


def heatmap_png(image: Image, heat: np.ndarray) -> bytes:
    """PNG of :func:`heatmap_overlay`."""
    return array_png(heatmap_overlay(image, heat))


def captioned(picture: np.ndarray, lines: Sequence[str], min_width: int = 384) -> np.ndarray:
    """``picture`` (H, W) grey or (H, W, 3) RGB uint8, enlarged (nearest neighbour) to at least ``min_width``
    pixels wide, with ``lines`` of text written on a black band below it; RGB (H', W', 3) uint8."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3]
    scale = max(1, -(-min_width // rgb.shape[1]))
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    height, width = rgb.shape[:2]
    chars = max(8, width // 6)  # PIL's default bitmap font is about 6 pixels per character
    wrapped = [chunk for line in lines for chunk in (line[i : i + chars] for i in range(0, max(len(line), 1), chars))]
    band = np.zeros((14 * len(wrapped) + 6, width, 3), np.uint8)
    canvas = PILImage.fromarray(np.ascontiguousarray(np.concatenate([rgb, band], axis=0)))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(wrapped):
        draw.text((4, height + 3 + 14 * i), line, fill="white")
    return np.asarray(canvas)
