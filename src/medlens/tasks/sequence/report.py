"""Figures of a sequence evaluation: ROC curves of the model and the baselines, and attention over visits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medlens.reports.figures import colour, figure, png
from medlens.reports.html import Figure
from medlens.tasks.sequence.prediction import SequencePrediction


def roc_figure(scores: dict[str, np.ndarray], target: np.ndarray) -> Figure:
    """ROC curves of each model's scores on the same subjects."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = figure(4.2, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, score) in enumerate(scores.items()):
        if len(set(target.tolist())) == 2:
            fpr, tpr, _ = roc_curve(target, score)
            ax.plot(fpr, tpr, color=colour(i), label=f"{name.replace('_', ' ')} ({roc_auc_score(target, score):.3f})")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right", fontsize=7)
    return Figure("roc", png(fig), "ROC curves on the same subjects")


def attention_figure(predictions: Sequence[SequencePrediction], target: np.ndarray, class_names: list[str]) -> Figure:
    """A heat map, subjects (rows, by probability) x visits (columns): each visit's attention weight."""
    order = np.argsort([-p.probability for p in predictions])
    width = max((len(p.attention) for p in predictions), default=1)
    grid = np.full((len(predictions), width), np.nan)
    for row, i in enumerate(order):
        grid[row, : len(predictions[i].attention)] = predictions[i].attention
    fig = figure(1.6 + 0.45 * width, 1.0 + 0.16 * len(predictions))
    ax = fig.add_subplot(1, 1, 1)
    shown = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
    ax.set_xticks(range(width), [str(k + 1) for k in range(width)])
    ax.set_xlabel("visit")
    ax.set_yticks(range(len(order)), [
        f"{predictions[i].subject} {'pos' if target[i] else 'neg'} p={predictions[i].probability:.2f}" for i in order
    ], fontsize=6)  # fmt: skip
    fig.colorbar(shown, ax=ax, label="attention")
    return Figure("attention", png(fig), f"Attention over visits per subject (pos: {class_names[1]}, neg: "
                  f"{class_names[0]}; p: the model's probability)")  # fmt: skip
