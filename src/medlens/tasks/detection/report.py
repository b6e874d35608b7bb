"""The detection report: one self-contained ``report.html`` (metrics with intervals, precision-recall curves per
class, the images with the most missed boxes drawn with predicted and true boxes), plus the plots as PNG files."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from medlens.evaluate.detection import ImageBoxes

N_WORST = 6
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]

_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:3px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}
img{max-width:100%}.grid{display:grid;grid-template-columns:1fr 1fr;gap:10px}</style></head><body>
<h1>{{ title }}</h1>
<p>COCO-style box metrics (101-point interpolated AP, up to 100 detections per image), 95% bootstrap intervals over
{{ n_bootstrap }} resamples of the images.</p>
<table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>
{% for name, value, ci in headline %}<tr><td>{{ name }}</td><td>{{ value }}</td><td>{{ ci }}</td></tr>{% endfor %}
</table>
<h2>Per class</h2>
<table><tr><th>class</th><th>boxes</th><th>AP@[.5:.95]</th><th>95% CI</th><th>AP@.5</th><th>95% CI</th></tr>
{% for row in per_class %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Operating point</h2>
<p>Detections scoring at least {{ "%.3f"|format(op.score_threshold) }} (chosen on validation), matched at IoU
{{ op.iou }}: precision {{ fmt(op.precision) }}, recall {{ fmt(op.recall) }}, F1 {{ fmt(op.f1) }} ({{ op.tp }} found,
{{ op.fp }} false, {{ op.fn }} missed).</p>
<h2>Precision-recall curves (IoU 0.5)</h2><img src="data:image/png;base64,{{ pr }}">
<h2>Images with the most missed boxes</h2>
<p>Solid: predicted boxes at the operating score; dashed white: true boxes.</p>
<div class="grid">{% for name, png, missed in worst %}<figure><img src="data:image/png;base64,{{ png }}">
<figcaption>{{ name }}: {{ missed }} missed</figcaption></figure>{% endfor %}</div>
</body></html>"""


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(entry: dict[str, Any]) -> str:
    lo, hi = entry.get("ci95") or [None, None]
    return f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""


def pr_png(curves: dict[str, dict[str, list[float]]], metrics: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, curve) in enumerate(curves.items()):
        ap = metrics["ap50_per_class"][name]["value"]
        ax.plot(
            curve["recall"], curve["precision"], color=PALETTE[i % len(PALETTE)], label=f"{name} (AP@.5 {_fmt(ap)})"
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def overlay_png(image: torch.Tensor, pred: ImageBoxes, truth: ImageBoxes | None, class_names: list[str]) -> bytes:
    """The image (gray or colour, any range) with predicted boxes in class colours and true boxes dashed."""
    from PIL import Image, ImageDraw

    array = image.float()
    if array.shape[0] != 3:
        array = array[:1].expand(3, -1, -1)
    lo, hi = float(array.min()), float(array.max())
    if image.dtype == torch.uint8 or (lo >= 0 and hi <= 255):
        lo, hi = 0.0, 255.0
    pixels = ((array - lo) / max(hi - lo, 1e-6) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels))
    draw = ImageDraw.Draw(picture)
    if truth is not None:
        for box in truth.boxes:
            x1, y1, x2, y2 = (float(v) for v in box)
            for start in range(int(x1), int(x2), 8):  # dashed: PIL draws no dashed lines
                draw.line([(start, y1), (min(start + 4, x2), y1)], fill="white", width=2)
                draw.line([(start, y2), (min(start + 4, x2), y2)], fill="white", width=2)
            for start in range(int(y1), int(y2), 8):
                draw.line([(x1, start), (x1, min(start + 4, y2))], fill="white", width=2)
                draw.line([(x2, start), (x2, min(start + 4, y2))], fill="white", width=2)
    scores = pred.scores if pred.scores is not None else np.ones(len(pred.labels))
    for box, label, score in zip(pred.boxes, pred.labels, scores, strict=True):
        colour = PALETTE[int(label) % len(PALETTE)]
        draw.rectangle([float(v) for v in box], outline=colour, width=2)
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{class_names[int(label)]} {score:.2f}", fill=colour)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_detection_report(
    folder: Path,
    metrics: dict[str, Any],
    preds: list[ImageBoxes],
    truths: list[ImageBoxes],
    paths: list[Path],
    misses: np.ndarray,
    class_names: list[str],
    score_threshold: float,
    *,
    title: str,
) -> None:
    """Write ``report.html``, ``pr.png`` and ``worst_<n>.png`` into ``folder`` (a temporary output folder)."""
    from medlens.io import read_image

    pr = pr_png(metrics["_curves"], metrics)
    (folder / "pr.png").write_bytes(pr)
    worst = []
    for rank, index in enumerate(np.argsort(-misses, kind="stable")[:N_WORST]):
        if misses[index] == 0:
            break
        p = preds[index]
        keep = p.scores >= score_threshold if p.scores is not None else np.ones(len(p.labels), dtype=bool)
        shown = ImageBoxes(p.boxes[keep], p.labels[keep], None if p.scores is None else p.scores[keep])
        image = torch.from_numpy(read_image(paths[index]).as_2d().array.copy())  # (C, H, W) as stored
        png = overlay_png(image, shown, truths[index], class_names)
        (folder / f"worst_{rank}.png").write_bytes(png)
        worst.append((paths[index].name, base64.b64encode(png).decode(), int(misses[index])))
    labels = {"map": "mAP@[.5:.95]", "map50": "mAP@.5", "map75": "mAP@.75", "mar100": "AR@100"}
    headline = [(labels[k], _fmt(metrics[k]["value"]), _ci(metrics[k])) for k in labels]
    per_class = [
        [n, metrics["n_boxes"][n], _fmt(metrics["ap_per_class"][n]["value"]), _ci(metrics["ap_per_class"][n]),
         _fmt(metrics["ap50_per_class"][n]["value"]), _ci(metrics["ap50_per_class"][n])]
        for n in class_names
    ]  # fmt: skip
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(_TEMPLATE).render(
        title=title, n_bootstrap=metrics["n_bootstrap"], headline=headline, per_class=per_class,
        op=metrics["operating_point"], fmt=_fmt, pr=base64.b64encode(pr).decode(), worst=worst,
    )  # fmt: skip
    (folder / "report.html").write_text(html)
