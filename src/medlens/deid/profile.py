"""De-identification profiles: the PS3.15 Annex E table as data, options, and site profiles.

A profile is looked up by name in a small registry (``list_profiles()``); ``basic`` is the DICOM Basic
Application Level Confidentiality Profile, whose Table E.1-1 ships as ``profiles/basic.csv`` and whose
medlens-specific choices ship as ``profiles/basic.yaml``. A site profile is a YAML file with the same keys
plus ``extends: basic``; it is validated (unknown keys or actions raise ``ConfigError``) and never executed.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medlens.core.errors import ConfigError, InputError

#: X remove, Z empty, D dummy, K keep, U remap UID, C clean (dates shifted), P keyed pseudonym.
ACTIONS = frozenset({"X", "Z", "D", "K", "U", "C", "P"})
_OPTION_COLUMNS = {
    "keep_dates_shifted": "retain_modified_dates",
    "keep_patient_characteristics": "retain_patient_characteristics",
    "keep_device_identity": "retain_device_identity",
}
_BUILTIN = {"basic": ("basic.csv", "basic.yaml")}


@dataclass(frozen=True)
class Options:
    """The Annex E options a run uses (each adds its CID 7050 code to the output)."""

    keep_dates_shifted: bool = False
    keep_patient_characteristics: bool = False
    keep_device_identity: bool = False


class BlankingRule(BaseModel):
    """Blank pixel ``regions`` (x0, y0, x1, y1; end excluded) of images whose attributes equal ``match``."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    match: dict[str, str | int] = Field(default_factory=dict)
    regions: list[tuple[int, int, int, int]]


class ProfileFile(BaseModel):
    """The YAML schema shared by ``basic.yaml`` and site profiles."""

    model_config = ConfigDict(extra="forbid")
    extends: str | None = None
    conditional: dict[str, str] = Field(default_factory=dict)
    pseudonymize: list[str] = Field(default_factory=list)
    unlisted_vr_actions: dict[str, str] = Field(default_factory=dict)
    keep_private_creators: list[str] = Field(default_factory=list)
    actions: dict[str, str] = Field(default_factory=dict)
    pixel_blanking: list[BlankingRule] = Field(default_factory=list)


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1: ``basic`` is the standard's action text (X, Z/D, X/Z/U*, ...)."""

    tag: str
    name: str
    basic: str
    options: dict[str, str]


@dataclass
class Profile:
    """A resolved profile: one action per tag, ready for the dataset walker.

    Attributes:
        actions: exact tag -> action; conditional ones (X/Z/D ...) are resolved per file by IOD type.
        masked: (group mask, group value, element or None, action) for repeating groups (50xx, 60xx).
        unlisted_vr_actions: VR -> action for standard attributes the table does not list.
        keep_private_creators: private creators whose blocks are kept.
        pixel_blanking: device/size rules for burned-in text.
        options: the Annex E options in use.
        conditional: the action for a conditional one when the SOP class is unknown.
    """

    name: str
    actions: dict[int, str]
    masked: list[tuple[int, int, int | None, str]]
    unlisted_vr_actions: dict[str, str]
    keep_private_creators: frozenset[str]
    pixel_blanking: list[BlankingRule]
    options: Options
    conditional: dict[str, str] = field(default_factory=dict)

    def action_for(self, tag: int) -> str | None:
        """The action for a standard tag, or None when the table does not list it."""
        action = self.actions.get(tag)
        if action is not None:
            return action
        group, elem = tag >> 16, tag & 0xFFFF
        for mask, value, element, masked_action in self.masked:
            if group & mask == value and (element is None or element == elem):
                return masked_action
        return None


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return sorted(_BUILTIN)


def parse_tag(text: str) -> int:
    """A tag from ``(0010,0020)``, ``00100020`` or a keyword such as ``PatientID``."""
    from pydicom.datadict import tag_for_keyword

    cleaned = text.strip().strip("()").replace(",", "").replace(" ", "")
    if len(cleaned) == 8:
        try:
            return int(cleaned, 16)
        except ValueError:
            pass
    tag = tag_for_keyword(text.strip())
    if tag is None:
        raise ConfigError(f"tag {text!r}", "not a tag like (0010,0020) nor a DICOM keyword")
    return int(tag)


@functools.lru_cache(maxsize=4)
def read_table(name: str = "basic") -> tuple[TableRow, ...]:
    """Rows of a built-in table file, as shipped."""
    text = resources.files("medlens.deid").joinpath("profiles", _BUILTIN[name][0]).read_text()
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        options = {col: raw[col] for col in _OPTION_COLUMNS.values() if raw.get(col)}
        rows.append(TableRow(raw["tag"], raw["name"], raw["basic"], options))
    return tuple(rows)


def _read_yaml(text: str, source: str) -> ProfileFile:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(source, "a profile must be a mapping of keys")
    try:
        return ProfileFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}", first["msg"]) from exc


def _merge(base: ProfileFile, site: ProfileFile) -> ProfileFile:
    return ProfileFile(
        conditional={**base.conditional, **site.conditional},
        pseudonymize=[*base.pseudonymize, *site.pseudonymize],
        unlisted_vr_actions={**base.unlisted_vr_actions, **site.unlisted_vr_actions},
        keep_private_creators=[*base.keep_private_creators, *site.keep_private_creators],
        actions={**base.actions, **site.actions},
        pixel_blanking=[*base.pixel_blanking, *site.pixel_blanking],
    )


def _check_action(action: str, where: str) -> str:
    """A single action, or a conditional one such as X/Z/D (resolved per file from the IOD's types)."""
    if not all(part in ACTIONS or part == "U*" for part in action.split("/")):
        raise ConfigError(where, f"unknown action {action!r} (expected one of {', '.join(sorted(ACTIONS))})")
    return action


def _masked_tag(tag: str) -> tuple[int, int, int | None] | None:
    """Repeating-group rows such as (50XX,XXXX) or (60XX,3000) -> (group mask, group value, element)."""
    group, elem = tag.strip("()").upper().split(",")
    if "X" not in group and "X" not in elem:
        return None
    mask = int("".join("0" if c == "X" else "F" for c in group), 16)
    value = int(group.replace("X", "0"), 16)
    return mask, value, None if "X" in elem else int(elem, 16)


def load_profile(profile: str | Path = "basic", options: Options | None = None) -> Profile:
    """Resolve a built-in profile name or a site profile YAML file into one action per tag.

    Args:
        profile: ``basic`` or the path of a site profile (``.yaml``) that ``extends: basic``.
        options: the Annex E options to apply (their columns in the table replace the basic action).

    Example:
        >>> p = load_profile("basic")
        >>> p.action_for(0x00100020), p.action_for(0x00080018), p.action_for(0x00081030)
        ('P', 'U', 'X')
    """
    options = options or Options()
    name = str(profile)
    if name in _BUILTIN:
        base_text = resources.files("medlens.deid").joinpath("profiles", _BUILTIN[name][1]).read_text()
        spec, table_name = _read_yaml(base_text, name), name
    else:
        path = Path(profile)
        if not path.is_file():
            raise InputError(path, f"no such profile (built-in profiles: {', '.join(list_profiles())})")
        site = _read_yaml(path.read_text(), str(path))
        table_name = site.extends or "basic"
        if table_name not in _BUILTIN:
            raise ConfigError(f"{path}: extends", f"unknown profile {table_name!r}")
        base_text = resources.files("medlens.deid").joinpath("profiles", _BUILTIN[table_name][1]).read_text()
        spec = _merge(_read_yaml(base_text, table_name), site)

    enabled = [col for opt, col in _OPTION_COLUMNS.items() if getattr(options, opt)]
    pseudonymized = {parse_tag(t) for t in spec.pseudonymize}
    actions: dict[int, str] = {}
    masked: list[tuple[int, int, int | None, str]] = []
    for row in read_table(table_name):
        action = row.basic
        for col in enabled:
            action = row.options.get(col, action)
        _check_action(action, f"{table_name} table row {row.tag} ({row.name})")
        is_masked = _masked_tag(row.tag)
        if is_masked:
            masked.append((*is_masked, action))
            continue
        tag = parse_tag(row.tag)
        actions[tag] = "P" if tag in pseudonymized and action in {"Z", "D"} else action
    for key, action in spec.actions.items():
        actions[parse_tag(key)] = _check_action(action, f"actions.{key}")
    for vr, action in spec.unlisted_vr_actions.items():
        _check_action(action, f"unlisted_vr_actions.{vr}")
    for combo, action in spec.conditional.items():
        _check_action(combo, f"conditional.{combo}")
        _check_action(action, f"conditional.{combo}")
    return Profile(
        name=name,
        actions=actions,
        masked=masked,
        unlisted_vr_actions=dict(spec.unlisted_vr_actions),
        keep_private_creators=frozenset(spec.keep_private_creators),
        pixel_blanking=list(spec.pixel_blanking),
        options=options,
        conditional=dict(spec.conditional),
    )


def profile_summary(profile: Profile) -> dict[str, Any]:
    """Counts of actions, for logs and reports."""
    counts: dict[str, int] = {}
    for action in profile.actions.values():
        counts[action] = counts.get(action, 0) + 1
    return {"name": profile.name, "actions": counts, "options": profile.options.__dict__}
