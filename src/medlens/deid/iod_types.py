"""Attribute types (1, 2, 3) per SOP class, to resolve Annex E's conditional actions such as X/Z/D.

"X/Z/D" means: remove, unless the IOD needs the attribute (Type 2: keep it empty; Type 1: a dummy value).
The types come from the DICOM standard's module tables as highdicom ships them. That source is 22 MB of JSON
(about a second and 100+ MB to load), so the few rows medlens needs (the conditional attributes, top level,
per SOP class) are extracted once into ``profiles/iod_types.csv``. Regenerate it after a highdicom upgrade:

    python -m medlens.deid.iod_types
"""

from __future__ import annotations

import csv
import functools
import io
import json
from importlib import resources
from pathlib import Path

from medlens.deid.profile import parse_tag, read_table

_STRICTNESS = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


@functools.lru_cache(maxsize=1)
def _types() -> dict[str, dict[int, str]]:
    text = resources.files("medlens.deid").joinpath("profiles", "iod_types.csv").read_text()
    table: dict[str, dict[int, str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        table.setdefault(row["sop_class_uid"], {})[int(row["tag"], 16)] = row["type"]
    return table


def attribute_type(sop_class_uid: str, tag: int) -> str | None:
    """'1', '1C', '2', '2C' or '3' for a top-level attribute; '3' when the IOD does not hold it.

    None when the SOP class is unknown (then the profile's ``conditional`` fallback applies).
    """
    types = _types().get(sop_class_uid)
    if types is None:
        return None
    return types.get(tag, "3")


def resolve(combo: str, attr_type: str | None, fallback: dict[str, str]) -> str:
    """Choose one action from a conditional one (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) for this attribute type.

    Example:
        >>> resolve("X/Z/D", "2", {}), resolve("X/Z/D", "1", {}), resolve("X/Z/D", "3", {})
        ('Z', 'D', 'X')
    """
    choices = combo.split("/")
    if "U*" in choices:  # keep referencing sequences; their UIDs are remapped (the issue asks to keep links)
        return "U"
    if attr_type is None:
        return fallback.get(combo, choices[-1])
    if attr_type.startswith("1"):
        return "D" if "D" in choices else choices[-1]
    if attr_type.startswith("2"):
        return "Z" if "Z" in choices else "D"
    return "X" if "X" in choices else "Z"


def _generate(target: Path) -> None:  # pragma: no cover - maintenance script
    base = resources.files("highdicom").joinpath("_standard")
    sop_iod = json.loads(base.joinpath("sop_class_iod_map.json").read_text())
    iod_modules = json.loads(base.joinpath("iod_module_map.json").read_text())
    module_attrs = json.loads(base.joinpath("module_attribute_map.json").read_text())
    from pydicom.datadict import tag_for_keyword

    wanted = set()
    for row in read_table("basic"):
        conditional = "/" in row.basic or any("/" in v for v in row.options.values())
        if conditional and "X" not in row.tag[1:5] and "X" not in row.tag[6:10]:
            wanted.add(parse_tag(row.tag))
    rows = []
    for sop, iod in sorted(sop_iod.items()):
        best: dict[int, str] = {}
        for module in iod_modules.get(iod, []):
            for attr in module_attrs.get(module["key"], []):
                tag = tag_for_keyword(attr["keyword"])
                if attr["path"] or tag not in wanted:
                    continue
                kind = attr["type"]
                if tag not in best or _STRICTNESS.get(kind, 4) < _STRICTNESS.get(best[tag], 4):
                    best[tag] = kind
        rows += [(sop, f"{tag:08X}", kind) for tag, kind in sorted(best.items())]
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sop_class_uid", "tag", "type"])
        writer.writerows(rows)


if __name__ == "__main__":  # pragma: no cover
    _generate(Path(__file__).with_name("profiles") / "iod_types.csv")
