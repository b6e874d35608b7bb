"""Classification plots as PNG bytes: ROC and PR curves, reliability diagram, confusion matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medlens.reports.figures import png as _png


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    return f"{entry['value']:.3f}"


def _legend(ax: Any, n_curves: int) -> None:
    if n_curves:
        ax.legend(
            loc="lower right" if n_curves <= 8 else "center left",
            fontsize=7 if n_curves > 6 else 8,
            bbox_to_anchor=None if n_curves <= 8 else (1.02, 0.5),
        )


def roc_png(curves: dict[str, Any], metrics: dict[str, Any], title: str = "ROC curves") -> bytes:
    """ROC curve(s) with the AUC of each class, and (binary) the operating and 0.5-threshold points."""
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    for name, curve in curves["roc"].items():
        auc = metrics["per_class"][name]["auc"]
        ax.plot(curve["fpr"], curve["tpr"], lw=1.6, label=f"{name} (AUC {_fmt(auc)})")
    markers = {"operating": ("o", "operating threshold"), "at_threshold_0.5": ("s", "threshold 0.5")}
    for key, (fpr, tpr) in curves.get("points", {}).items():
        marker, label = markers[key]
        if key == "operating":
            label = f"{label} {metrics['operating_point']['threshold']:.3f}"
        ax.plot([fpr], [tpr], marker=marker, ms=7, ls="none", mfc="none", mew=1.8, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="1 - specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        title=f"{title}  (AUC {_fmt(metrics['auc'])})",
    )
    _legend(ax, len(curves["roc"]) + len(curves.get("points", {})))
    return _png(fig)


def pr_png(curves: dict[str, Any], metrics: dict[str, Any], title: str = "Precision-recall curves") -> bytes:
    """Precision-recall curve(s) with the average precision of each class and its prevalence line."""
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    for name, curve in curves["pr"].items():
        ap = metrics["per_class"][name]["average_precision"]
        ax.step(curve["recall"], curve["precision"], where="post", lw=1.6, label=f"{name} (AP {_fmt(ap)})")
        if len(curves["pr"]) == 1:
            ax.axhline(curve["prevalence"], ls="--", lw=0.8, color="grey", label="prevalence (chance)")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="recall (sensitivity)",
        ylabel="precision",
        title=f"{title}  (AP {_fmt(metrics['average_precision'])})",
    )
    _legend(ax, len(curves["pr"]) + (len(curves["pr"]) == 1))
    return _png(fig)


def reliability_png(calibration: dict[str, Any], ece: dict[str, Any]) -> bytes:
    """Reliability diagram (observed frequency per confidence bin) above a histogram of confidences."""
    fig = Figure(figsize=(5.2, 5.4))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = calibration["bins"]
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    filled = [b["count"] > 0 for b in bins]
    observed = np.array([b["observed"] if ok else 0.0 for b, ok in zip(bins, filled, strict=True)])
    confidence = np.array([b["mean_confidence"] if ok else 0.0 for b, ok in zip(bins, filled, strict=True)])
    top.bar(lower, observed, width=width, align="edge", edgecolor="black", lw=0.6, label="observed")
    gap_low = np.minimum(observed, confidence)
    gap = np.where(filled, np.abs(confidence - observed), 0.0)
    top.bar(
        lower,
        gap,
        bottom=gap_low,
        width=width,
        align="edge",
        color="none",
        hatch="///",
        edgecolor="tab:red",
        lw=0.8,
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ci = ece.get("ci95") or [None, None]
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
    top.set(
        xlim=(0, 1),
        ylim=(0, 1),
        ylabel="observed frequency",
        title=f"Reliability diagram  (ECE {_fmt(ece)}{ci_text}, {calibration['n_bins']} bins)",
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(lower, [b["count"] for b in bins], width=width, align="edge", color="grey", edgecolor="black", lw=0.6)
    bottom.set(xlabel="confidence: " + calibration["compares"].split(" vs ")[0], ylabel="cases")
    return _png(fig)


def _matrix(ax: Any, cm: np.ndarray, labels: list[str], title: str) -> None:
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    small = len(labels) > 6
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}" if small else f"{cm[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=6 if small else 9,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45 if small else 0, ha="right" if small else "center", fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)


def confusion_png(confusion: dict[str, np.ndarray], class_names: list[str], task: str, operating_label: str) -> bytes:
    """Confusion matrix at the operating point, and (binary, multilabel) at threshold 0.5 beside it.

    Multilabel: one 2x2 matrix per label at the operating threshold (negative/positive).
    """
    if task == "multilabel":
        cms = confusion["operating"]
        cols = min(4, len(cms))
        rows = int(np.ceil(len(cms) / cols))
        fig = Figure(figsize=(2.4 * cols, 2.3 * rows + 0.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax, cm, name in zip(axes, cms, class_names, strict=False):
            _matrix(ax, cm, ["neg", "pos"], name)
        for ax in axes[len(cms) :]:
            ax.set_axis_off()
        fig.suptitle(f"Per-label confusion matrices ({operating_label})", fontsize=10)
        return _png(fig)
    panels = [("operating", operating_label)]
    if task == "binary":
        panels.append(("at_threshold_0.5", "threshold 0.5 (MedMNIST protocol)"))
    size = max(3.6, 0.45 * len(class_names) + 1.5)
    fig = Figure(figsize=(size * len(panels), size), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels))).ravel()
    for ax, (key, label) in zip(axes, panels, strict=True):
        _matrix(ax, np.asarray(confusion[key]), class_names, label)
    return _png(fig)
