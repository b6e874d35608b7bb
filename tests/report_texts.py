"""Checks of the plain-language report texts against their JSON (imported by tests as ``from report_texts import
...``; ``tests`` is on pytest's path).

A text may hold a number only when the report's JSON holds it: the texts are generated from the JSON alone. Words
that carry digits of their own are left out first: strings of the JSON (paths, dates, names, copied verbatim) and
the language's metric names (``HD95``, ``mAP@.5``), which are names, not figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from medlens.reports.clinical import sentences

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def json_numbers(value: Any) -> Iterator[float]:
    """Every number in a JSON value (booleans are not numbers)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from json_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_numbers(v)


def json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


def numbers_not_in_report(text: str, report: dict[str, Any], language: str) -> list[str]:
    """The numbers of ``text`` that are not numbers of ``report`` (an empty list is the pass)."""
    words = set(json_strings(report)) | {str(v) for v in (sentences(language).get("metric_names") or {}).values()}
    for word in sorted(words, key=len, reverse=True):  # longest first: a path before the name inside it
        if any(c.isdigit() for c in word):
            text = text.replace(word, " ")
    known = list(json_numbers(report))
    found = NUMBER.findall(text)
    assert found, "a report text with no number at all proves nothing"
    return [n for n in found if not any(math.isclose(float(n), k, rel_tol=0, abs_tol=1e-12) for k in known)]
