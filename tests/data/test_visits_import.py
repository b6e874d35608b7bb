"""The visit-table importer's rules on the real OASIS-2 table: which value is the positive outcome (with a
three-valued target as in OASIS-2 copies that keep 'Converted'), and --positive."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medlens.core.errors import ConfigError
from medlens.data.importers.visits import import_visits

COLUMNS = {"subject_column": "Subject ID", "order_column": "Visit", "target_column": "Group"}


def with_converted(source: Path, out: Path) -> Path:
    """The OASIS-2 table with the demented subjects whose first visit had CDR 0 marked 'Converted' (on every visit,
    as the original OASIS-2 release does)."""
    with open(source, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    first = {r["Subject ID"]: r for r in sorted(table, key=lambda r: -int(r["Visit"]))}
    converted = {s for s, r in first.items() if r["Group"] == "Demented" and r["CDR"] == "0"}
    for row in table:
        if row["Subject ID"] in converted:
            row["Group"] = "Converted"
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return out


def test_converted_and_demented_are_positive_by_default(real_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = with_converted(real_data("oasis2/oasis_longitudinal.csv"), tmp_path / "oasis3.csv")
    dataset = import_visits(table, tmp_path / "ds", **COLUMNS)
    assert dataset.spec.classes == ["Nondemented", "Converted or Demented"]
    converted = [c for c in dataset.cases if c.extra["Group"] == "Converted"]
    assert converted and all(c.target == "1" for c in converted)
    assert all(c.target == "0" for c in dataset.cases if c.extra["Group"] == "Nondemented")


def test_positive_names_the_positive_class_and_an_unknown_value_is_refused(real_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = with_converted(real_data("oasis2/oasis_longitudinal.csv"), tmp_path / "oasis3.csv")
    dataset = import_visits(table, tmp_path / "ds", positive=["Converted"], exclude=["MMSE"], **COLUMNS)
    assert dataset.spec.classes == ["Demented or Nondemented", "Converted"]
    assert '"MMSE": "excluded by the user"' in dataset.spec.source["excluded"]
    with pytest.raises(ConfigError, match="'Dementia'"):
        import_visits(table, tmp_path / "ds2", positive=["Dementia"], **COLUMNS)
