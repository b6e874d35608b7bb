"""Pictures and the HTML report of a segmentation evaluation: overlays, per-case table, worst cases."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.atomic import atomic_file, write_text_atomic
from medlens.core.image import Image

# one colour per class index (background transparent), repeated for many classes
PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180]],
    dtype=np.float32,
)


def busiest_slice(labels: np.ndarray) -> int | None:
    """The slice index (last axis) with the most foreground of a 3D label map; None for 2D."""
    if labels.ndim != 3:
        return None
    counts = (labels > 0).reshape(-1, labels.shape[2]).sum(0)
    return int(np.argmax(counts)) if counts.any() else labels.shape[2] // 2


def overlay(image: Image, labels: np.ndarray, slice_index: int | None = None, alpha: float = 0.45) -> np.ndarray:
    """An RGB picture (H, W, 3) uint8 of one plane with the label colours blended in."""
    from medlens.io.writers import render, rendered_slice

    grey = render(Image(image.array[:1], image.affine, meta=dict(image.meta)), slice_index=slice_index)
    plane = rendered_slice(Image(labels[None], image.affine, kind="label"), slice_index)[0]  # (H, W)
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=2)
    colours = PALETTE[1 + (plane.astype(int) - 1) % (len(PALETTE) - 1)]
    mask = (plane > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * colours, rgb).clip(0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_overlay(image: Image, labels: np.ndarray, path: Path) -> Path:
    """Write the overlay of the busiest slice as a PNG, atomically."""
    with atomic_file(path, "wb") as handle:
        handle.write(png_bytes(overlay(image, labels, busiest_slice(labels))))  # type: ignore[attr-defined]
    return path


def comparison(image: Image, truth: np.ndarray, pred: np.ndarray) -> bytes:
    """Truth and prediction side by side on the slice where the truth has most foreground."""
    k = busiest_slice(truth)
    left, right = overlay(image, truth, k), overlay(image, pred, k)
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return png_bytes(np.concatenate([left, gap, right], axis=1))


def write_report(
    path: Path,
    metrics: dict[str, Any],
    rows: list[dict[str, Any]],
    worst: list[tuple[str, bytes]],
    title: str,
    context: dict[str, Any],
) -> None:
    """report.html: headline metrics with 95% CIs, per-class table, worst cases as overlays, per-case table."""

    def cell(entry: dict[str, Any] | None, digits: int = 4) -> str:
        if not entry or entry.get("value") is None:
            return "n/a"
        lo, hi = entry.get("ci95", [None, None])
        ci = f" ({lo:.{digits}f} to {hi:.{digits}f})" if lo is not None and hi is not None else ""
        return f"{entry['value']:.{digits}f}{ci}"

    classes = list(metrics["dice_per_class"])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%;image-rendering:pixelated}</style>",
        f"</head><body><h1>{html.escape(title)}</h1><table>",
    ]
    parts += [f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in context.items()]
    parts.append("</table><h2>Case-averaged metrics (95% bootstrap CI)</h2>")
    parts.append(f"<p>Mean Dice over foreground classes: <b>{cell(metrics['dice'])}</b></p>")
    parts.append("<table><tr><th>class</th><th>Dice</th><th>IoU</th><th>HD95 (mm)</th><th>ASD (mm)</th>")
    parts.append(f"<th>NSD @ {metrics['nsd_tolerance_mm']} mm</th></tr>")
    for name in classes:
        parts.append(
            f"<tr><th>{html.escape(name)}</th><td>{cell(metrics['dice_per_class'][name])}</td>"
            f"<td>{cell(metrics['iou'][name])}</td><td>{cell(metrics['hd95'][name], 2)}</td>"
            f"<td>{cell(metrics['asd'][name], 2)}</td><td>{cell(metrics['nsd'][name])}</td></tr>"
        )
    parts.append("</table><h2>Worst cases (truth left, prediction right)</h2>")
    for case_id, picture in worst:
        data = base64.b64encode(picture).decode()
        parts.append(f"<h3>{html.escape(case_id)}</h3><img src='data:image/png;base64,{data}' width='480'>")
    parts.append("<h2>Per case</h2><table><tr><th>case</th>")
    parts += [f"<th>Dice {html.escape(n)}</th><th>HD95 {html.escape(n)}</th>" for n in classes]
    parts.append("</tr>")
    for row in rows:
        cells = "".join(
            f"<td>{_num(row['dice'][j])}</td><td>{_num(row['hd95'][j], 2)}</td>" for j in range(len(classes))
        )
        parts.append(f"<tr><th>{html.escape(row['case_id'])}</th>{cells}</tr>")
    parts.append("</table></body></html>")
    write_text_atomic(path, "\n".join(parts))


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"
