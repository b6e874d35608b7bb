"""The one report template: self-contained, escaped, every figure embedded and written beside the page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from medlens.reports.figures import array_png
from medlens.reports.html import Cell, Figure, Section, Table, context_section, metric_cell, text_cell, write_report


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    import numpy as np

    png = array_png(np.arange(64, dtype=np.uint8).reshape(8, 8))
    sections = [
        Section(
            "Results <b>",
            "results",
            text=["a <script>alert(1)</script> note"],
            tables=[Table(["metric", "value"], [[Cell("dice"), metric_cell({"value": 0.8125, "ci95": [0.7, 0.9]})]])],
            figures=[Figure("curve", png, "a figure & its caption")],
        ),
        context_section({"model": "dynunet", "sizes": [32, 32, 32], "threshold": float("nan")}),
    ]
    page = write_report(tmp_path, "Title & more", ["one line"], sections)
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "Title &amp; more" in html
    assert "0.812" in html and "[0.700, 0.900]" in html and "n/a" in html
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert [base64.b64decode(e) for e in embedded] == [png] and (tmp_path / "curve.png").read_bytes() == png
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(r.startswith(("data:", "#")) for r in references), references  # nothing fetched from elsewhere


def test_cells() -> None:
    assert metric_cell(None).value == "n/a" and metric_cell({"value": None}).value == "n/a"
    assert metric_cell({"value": 0.5, "ci95": [None, None]}).ci == ""
    assert text_cell({"a": 1}).block and text_cell(2.0).value == "2.0000" and text_cell(None).value == "n/a"
