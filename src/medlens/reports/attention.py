"""Pictures of attention over slices (which slices decided): a bar per slice beside the most attended slices, and the
mean attention per slice over many cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medlens.reports.figures import colour, figure, png

#: the spatial axes of medlens' RAS volumes, for axis labels
AXIS_NAMES = ("R-L (sagittal slices)", "A-P (coronal slices)", "S-I (axial slices)")


def axis_label(axis: int | None) -> str:
    """``"slice index along axis 2, S-I (axial slices)"``."""
    if axis is None:
        return "slice index"
    return f"slice index along axis {axis}, {AXIS_NAMES[axis]}" if 0 <= axis < 3 else f"slice index along axis {axis}"


def _picture(pixels: np.ndarray) -> np.ndarray:
    """A slice as display values in [0, 1] (its own 1st-99th percentile window)."""
    lo, hi = np.percentile(pixels, [1, 99]) if pixels.size else (0.0, 1.0)
    return np.clip((pixels - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(pixels, dtype=np.float32)


def slice_attention_png(
    weights: Sequence[float], slices: Mapping[int, np.ndarray], axis: int | None, title: str | None = None
) -> bytes:
    """The attention weight of every slice (bars; the most attended in colour) beside those slices' pictures.

    Args:
        weights: one weight per slice (summing to 1).
        slices: the most attended slices by index, ``(h, w)`` arrays (any units; each shown in its own window).
        axis: the spatial axis the slices are taken along (for the label).
        title: a line above the bars (e.g. the case and the prediction).
    """
    w = np.asarray(weights, dtype=np.float64)
    shown = sorted(slices, key=lambda i: -w[i])
    fig = figure(3.6 + 1.9 * len(shown), 2.8)
    grid = fig.add_gridspec(1, 1 + len(shown), width_ratios=[3.6] + [1.9] * len(shown), wspace=0.25)
    ax = fig.add_subplot(grid[0, 0])
    colours = ["#9a9a9a"] * len(w)
    for rank, index in enumerate(shown):
        colours[index] = colour(rank)
    ax.bar(np.arange(len(w)), w, width=0.9, color=colours)
    ax.axhline(1 / max(1, len(w)), color="black", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel(axis_label(axis), fontsize=8)
    ax.set_ylabel("attention weight", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "attention per slice (sums to 1)", fontsize=9)
    for rank, index in enumerate(shown):
        sub = fig.add_subplot(grid[0, 1 + rank])
        sub.imshow(_picture(np.asarray(slices[index], dtype=np.float32)).T, cmap="gray", origin="lower",
                   interpolation="nearest")  # fmt: skip
        sub.set_title(f"slice {index}: {w[index]:.3f}", fontsize=8, color=colour(rank))
        sub.set_xticks([])
        sub.set_yticks([])
        for spine in sub.spines.values():
            spine.set_edgecolor(colour(rank))
            spine.set_linewidth(2)
    return png(fig)


def mean_attention_png(per_group: Mapping[str, np.ndarray], axis: int | None) -> bytes:
    """Mean attention per slice (with its interquartile band) for each group of cases (e.g. each true class).

    Args:
        per_group: group name -> ``(cases, S)`` weights.
        axis: the spatial axis of the slices.
    """
    fig = figure(5.6, 3.2)
    ax = fig.add_subplot()
    s = max((rows.shape[1] for rows in per_group.values() if len(rows)), default=1)
    for i, (name, rows) in enumerate(per_group.items()):
        if len(rows) == 0:
            continue
        x = np.arange(rows.shape[1])
        lo, hi = np.percentile(rows, [25, 75], axis=0)
        ax.fill_between(x, lo, hi, color=colour(i), alpha=0.2, lw=0)
        ax.plot(x, rows.mean(axis=0), color=colour(i), lw=1.6, label=f"{name} (n={len(rows)})")
    ax.axhline(1 / s, color="black", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel(axis_label(axis), fontsize=8)
    ax.set_ylabel("attention weight", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title("mean attention per slice (band: 25th-75th percentile of cases)", fontsize=9)
    return png(fig)
