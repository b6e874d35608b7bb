"""The regression report: metrics with intervals, predicted against true values, and a Bland-Altman plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.reports.figures import colour, figure, png
from medlens.reports.html import Cell, Figure, Section, Table, context_section, metric_cell, text_cell, write_report

_LABELS = {
    "mae": "mean absolute error",
    "rmse": "root mean squared error",
    "r2": "R² (coefficient of determination)",
    "pearson_r": "Pearson r",
    "bias": "bias (mean of predicted - true)",
    "loa_low": "lower 95% limit of agreement",
    "loa_high": "upper 95% limit of agreement",
}


def scatter_png(truth: np.ndarray, predicted: np.ndarray, name: str, unit: str, metrics: dict[str, Any]) -> bytes:
    fig = figure(5.0, 4.8)
    ax = fig.add_subplot()
    lo, hi = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    pad = (hi - lo) * 0.05 or 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", lw=0.8, color="grey", label="identity")
    ax.scatter(truth, predicted, s=14, alpha=0.75, color=colour(3))
    r2 = metrics["r2"]["value"]
    ax.set(
        xlim=(lo - pad, hi + pad),
        ylim=(lo - pad, hi + pad),
        xlabel=f"true {name}" + (f" ({unit})" if unit else ""),
        ylabel=f"predicted {name}" + (f" ({unit})" if unit else ""),
        title=f"Predicted against true (R² {r2:.3f})" if r2 is not None else "Predicted against true",
    )
    ax.legend(loc="upper left")
    return png(fig)


def bland_altman_png(truth: np.ndarray, predicted: np.ndarray, unit: str, metrics: dict[str, Any]) -> bytes:
    fig = figure(5.6, 4.4)
    ax = fig.add_subplot()
    mean, diff = (truth + predicted) / 2, predicted - truth
    ax.scatter(mean, diff, s=14, alpha=0.75, color=colour(3))
    for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
        value = metrics[key]["value"]
        ax.axhline(value, ls=style, color=colour(0), lw=1.0)
        ax.annotate(
            f"{key.replace('_', ' ')} {value:.3g}", (ax.get_xlim()[1], value), ha="right", va="bottom", fontsize=8
        )
    suffix = f" ({unit})" if unit else ""
    ax.set(xlabel=f"mean of true and predicted{suffix}", ylabel=f"predicted - true{suffix}", title="Bland-Altman")
    return png(fig)


def write_regression_report(
    folder: Path,
    metrics: dict[str, Any],
    truth: np.ndarray,
    predicted: np.ndarray,
    case_ids: list[str],
    *,
    name: str,
    unit: str,
    title: str,
    context: dict[str, Any],
    extra: Sequence[Section] = (),
) -> Path:
    """``report.html``, ``scatter.png`` and ``bland_altman.png`` in ``folder`` (``extra`` sections after the largest
    errors)."""
    rows = [[Cell(_LABELS[k]), metric_cell(metrics[k], 4)] for k in _LABELS]
    order = np.argsort(-np.abs(predicted - truth))[:10]
    worst = [
        [
            Cell(case_ids[i]),
            text_cell(float(truth[i])),
            text_cell(float(predicted[i])),
            text_cell(float(predicted[i] - truth[i])),
        ]
        for i in order
    ]
    figures = [
        Figure("scatter", scatter_png(truth, predicted, name, unit, metrics), "Predicted against true value, per case"),
        Figure(
            "bland_altman",
            bland_altman_png(truth, predicted, unit, metrics),
            "Bland-Altman: difference against mean, with the bias and the 95% limits of agreement",
        ),
    ]
    sections = [
        Section(
            f"Metrics ({unit})" if unit else "Metrics",
            "metrics",
            tables=[Table(["metric", "value (95% CI)"], rows)],
        ),
        Section("Agreement", "plots", figures=figures),
        Section("Largest errors", "worst", tables=[Table(["case", "true", "predicted", "error"], worst)]),
        *extra,
        context_section(context),
        Section(
            "Method",
            "method",
            text=[
                "Errors are predicted - true. R² is 1 - SSE/SST about the mean of the true values; Pearson r between "
                "predicted and true; limits of agreement bias ± 1.96 SD of the error. Intervals: 95% bootstrap over "
                f"{metrics['bootstrap']['unit']}s ({metrics['bootstrap']['n_resamples']} resamples): BCa for MAE, "
                "RMSE and bias, percentile for the others."
            ],
        ),
    ]
    summary = [f"Target: {name}{f' ({unit})' if unit else ''} · {metrics['n_cases']} cases"]
    return write_report(folder, title, summary, sections)


def uncertainty_section(metrics: dict[str, Any], unit: str) -> Section:
    """The conformal interval's coverage and width, and the members' spread."""
    suffix = f" ({unit})" if unit else ""
    rows = []
    if "interval_coverage" in metrics:
        rows += [
            [Cell(f"interval coverage (target {metrics['interval_level']:.0%})"),
             metric_cell(metrics["interval_coverage"])],
            [Cell(f"mean interval width{suffix}"), metric_cell(metrics["interval_width"], 4)],
        ]  # fmt: skip
    sd = metrics["member_sd"]
    rows += [
        [Cell(f"mean member SD{suffix}"), text_cell(sd["mean"])],
        [Cell("Spearman rho, member SD vs absolute error"), text_cell(sd["spearman_with_abs_error"])],
    ]
    return Section(
        "Uncertainty",
        "uncertainty",
        text=[
            "Each prediction has a split-conformal interval (the value ± the quantile of the validation cases' "
            "absolute errors at the bundle's level) and the members' standard deviation."
        ],
        tables=[Table(["figure", "value (95% CI)"], rows, text_columns=("figure",))],
    )
