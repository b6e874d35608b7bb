"""One self-contained ``report.html`` for every task: sections of text, tables and pictures on one template.

A task builds :class:`Section` values (no HTML); :func:`write_report` renders them with Jinja2 (autoescaped)
on ``templates/report.html.j2`` and writes each figure beside the page as a PNG too. The page needs nothing
beside itself (no scripts, stylesheets, fonts or images from elsewhere), so it can be mailed or archived.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from medlens.core.outputs import atomic_file, write_text_atomic

REPORT_NAME = "report.html"


@dataclass
class Cell:
    """A table cell: the value as text, an interval beside it, or a preformatted block."""

    value: str
    ci: str = ""
    block: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    text_columns: tuple[str, ...] = ()  # columns shown left-aligned, as words


@dataclass
class Figure:
    key: str  # file name (without .png) and page anchor
    png: bytes
    caption: str
    width: int | None = None
    pixelated: bool = False  # medical pixels shown as they are, not smoothed by the browser

    @property
    def data(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    title: str
    anchor: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def metric_cell(entry: dict[str, Any] | None, digits: int = 3) -> Cell:
    """A ``{"value", "ci95"}`` metric entry as a cell: the value, its 95% interval beside it; n/a if undefined."""
    if not entry or entry.get("value") is None:
        return Cell("n/a")
    lo, hi = entry.get("ci95") or [None, None]
    ci = f"[{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return Cell(f"{entry['value']:.{digits}f}", ci)


def text_cell(value: Any, digits: int = 4) -> Cell:
    """Any value as a cell: numbers rounded, mappings and lists as indented JSON."""
    if isinstance(value, dict | list | tuple):
        return Cell(json.dumps(value, indent=2, default=str), block=True)
    if isinstance(value, float):
        return Cell("n/a" if value != value else f"{value:.{digits}f}")
    return Cell("n/a" if value is None else str(value))


def context_section(context: dict[str, Any], title: str = "Run context") -> Section:
    """A two-column table of facts about the run (model, data, settings)."""
    rows = [[Cell(str(k)), text_cell(v)] for k, v in context.items()]
    return Section(title, "context", tables=[Table(["", ""], rows, text_columns=("",))])


def write_report(folder: Path, title: str, summary: list[str], sections: list[Section]) -> Path:
    """Write ``folder/report.html`` and every figure as ``folder/<key>.png``; return the page's path."""
    for section in sections:
        for figure in section.figures:
            with atomic_file(folder / f"{figure.key}.png", "wb") as handle:
                handle.write(figure.png)
    source = resources.files("medlens.reports").joinpath("templates", "report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.from_string(source).render(title=title, summary=summary, sections=sections)
    path = folder / REPORT_NAME
    write_text_atomic(path, html)
    return path
