"""Display windows: from modality values (HU for CT) to 8-bit grey for pictures and overlays.

CT presets are the usual radiology reading windows (centre, width in HU). MR has no absolute scale, so
its presets are percentile ranges of the image itself.
"""

from __future__ import annotations

import numpy as np

from medlens.core.image import Image

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal-bone": (600.0, 2800.0),
    "soft-tissue": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
}

MR_PERCENTILES: dict[str, tuple[float, float]] = {
    "mr": (0.5, 99.5),
    "mr-wide": (0.0, 100.0),
    "mr-contrast": (2.0, 98.0),
}

PRESETS = (*CT_WINDOWS, *MR_PERCENTILES, "dicom", "auto")


def resolve_window(image: Image, window: str | tuple[float, float] | None, data: np.ndarray) -> tuple[float, float]:
    """The (low, high) value range to show for a window name or an explicit (centre, width).

    ``"auto"`` (and ``None``) uses the DICOM WindowCenter/WindowWidth when present, the soft-tissue window for
    CT without one, and the ``"mr"`` percentiles otherwise. ``"dicom"`` insists on the header window.
    """
    if isinstance(window, tuple):
        center, width = window
        return center - width / 2.0, center + width / 2.0
    name = (window or "auto").lower()
    meta = image.meta
    if name in ("auto", "dicom"):
        if "window_center" in meta and "window_width" in meta and float(meta["window_width"]) > 1:
            center, width = float(meta["window_center"]), float(meta["window_width"])
            return center - width / 2.0, center + width / 2.0
        if name == "dicom":
            raise ValueError("the image has no DICOM window (WindowCenter/WindowWidth)")
        name = "soft-tissue" if meta.get("modality") == "CT" else "mr"
    if name in CT_WINDOWS:
        center, width = CT_WINDOWS[name]
        return center - width / 2.0, center + width / 2.0
    if name in MR_PERCENTILES:
        lo_p, hi_p = MR_PERCENTILES[name]
        low, high = np.percentile(data, [lo_p, hi_p])
        return float(low), float(max(high, low + 1e-6))
    raise ValueError(f"unknown window {window!r}; presets: {', '.join(PRESETS)}")


def to_uint8(image: Image, data: np.ndarray, window: str | tuple[float, float] | None = None) -> np.ndarray:
    """Map values to 0-255 through a window; MONOCHROME1 (white is low) is inverted for display.

    8-bit colour pictures are returned unchanged.
    """
    if data.dtype == np.uint8 and (image.channels in (3, 4) or (window is None and "modality" not in image.meta)):
        return data
    low, high = resolve_window(image, window, data)
    scaled = (data.astype(np.float32) - low) / (high - low)
    out = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)
    if image.meta.get("photometric_interpretation") == "MONOCHROME1":
        out = 255 - out
    return out
