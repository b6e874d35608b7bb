"""Figures as PNG bytes, and the one palette every picture and plot uses.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never through
``pyplot``, so no global backend or figure state is touched (safe in servers and threads).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
#: one colour per class (index 0 is the first foreground class / first box class); repeats for many classes
PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def palette_rgb() -> np.ndarray:
    """The palette as an (n, 3) float array of 0..255 values."""
    return np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], dtype=np.float32)


def colour(index: int) -> str:
    """The palette colour of class ``index`` (wrapping around)."""
    return PALETTE[index % len(PALETTE)]


def figure(width: float, height: float, **kwargs: object) -> Figure:
    """A new figure of ``width`` x ``height`` inches on the Agg canvas."""
    fig = Figure(figsize=(width, height), **kwargs)  # type: ignore[arg-type]
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def array_png(pixels: np.ndarray) -> bytes:
    """An (H, W) or (H, W, 3) uint8 array as PNG bytes."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
