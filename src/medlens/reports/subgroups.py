"""The report's subgroup table (``evaluate --by COLUMN``): every subgroup's headline metric beside the rest's, a few
more metrics, and the subgroups flagged as falling behind (see :mod:`medlens.metrics.subgroups`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medlens.metrics.subgroups import headline_entry
from medlens.reports.html import Cell, Section, Table, metric_cell


def subgroup_section(subgroups: dict[str, Any], columns: Sequence[tuple[str, str]] = (), digits: int = 3) -> Section:
    """A report section from the ``subgroups`` part of ``metrics.json``.

    Args:
        subgroups: :func:`~medlens.metrics.subgroups.subgroup_metrics`'s result.
        columns: further metrics to show, as ``(key, label)`` (dotted keys reach into mappings).
        digits: decimals shown.
    """
    headline = subgroups["headline"]
    header = ["subgroup", "cases", "patients", f"{headline} (95% CI)", f"{headline} of the rest", "flagged"]
    header += [label for _, label in columns]
    rows = []
    for name, group in subgroups["groups"].items():
        rows.append(
            [
                Cell(name),
                Cell(str(group["n_cases"])),
                Cell(str(group["n_patients"])),
                metric_cell(group["headline"], digits),
                metric_cell(group["rest"], digits),
                Cell("BELOW THE REST" if group["flagged"] and subgroups["higher_is_better"] else
                     "ABOVE THE REST" if group["flagged"] else ""),
                *[metric_cell(headline_entry(group["metrics"], key), digits) for key, _ in columns],
            ]
        )  # fmt: skip
    flagged = subgroups["flagged"]
    text = [
        f"Cases grouped by the manifest column {subgroups['column']!r}"
        + (f" ({subgroups['banding']})" if subgroups.get("banding") else "")
        + f"; every metric of each subgroup is in metrics.json under subgroups. {subgroups['rule'].capitalize()}.",
        f"Flagged: {', '.join(flagged)}." if flagged else "No subgroup is flagged.",
    ]
    return Section(
        f"Subgroups by {subgroups['column']}",
        "subgroups",
        text=text,
        tables=[Table(header, rows, text_columns=("subgroup", "flagged"))],
    )
