"""Pictures of uncertainty every task can use: the risk-coverage curve of selective prediction."""

from __future__ import annotations

from typing import Any

from medlens.reports.figures import figure, png


def risk_coverage_png(
    curve: dict[str, Any], aurc: dict[str, Any], *, risk_label: str = "error rate of the cases kept",
    referral_coverage: float | None = None,
) -> bytes:  # fmt: skip
    """The risk-coverage curve (``metrics.json``'s ``risk_coverage``) with its AURC, the risk of keeping every case
    as a line, and the coverage at the referral threshold when there is one."""
    fig = figure(5.2, 4.2)
    ax = fig.add_subplot()
    coverage = curve["coverage"]
    risk = [float("nan") if r is None else r for r in curve["risk"]]
    ax.step(coverage, risk, where="post", lw=1.6, label="keep the most confident cases")
    if risk:
        ax.axhline(risk[-1], ls="--", lw=0.8, color="grey", label=f"keep every case ({risk[-1]:.3f})")
    if referral_coverage is not None:
        ax.axvline(
            referral_coverage,
            ls=":",
            lw=1.2,
            color="tab:red",
            label=f"referral threshold ({referral_coverage:.0%} kept)",
        )
    value = aurc.get("value")
    lo, hi = aurc.get("ci95") or [None, None]
    shown = "n/a" if value is None else f"{value:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")
    ax.set(xlim=(0, 1.01), ylim=(0, None), xlabel="coverage (share of cases answered)", ylabel=risk_label,
           title=f"Risk-coverage  (AURC {shown})")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    return png(fig)
