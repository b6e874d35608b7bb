"""Which series of a study a model takes: rules that are data, kept with the bundle, with defaults from training.

A study holds many series (localizers, several sequences, derived objects such as earlier SEGs). The bundle's
rules say which of them the model was made for::

    # bundle/series_rules.yaml (optional; without it the defaults below apply)
    modalities: [MR]                 # DICOM Modality codes; empty: any
    body_parts: []                   # BodyPartExamined values; empty: any
    description_pattern: "t1|mprage" # regular expression searched in SeriesDescription (case-insensitive)
    exclude_pattern: "localizer|scout"
    min_size: 16                     # rows and columns, each, at least ...
    max_size: 512                    # ... and at most
    min_images: 3                    # images (instances or frames) in the series
    max_images: 2000

Defaults come from what the model was trained on: the modality of its training data (``bundle.info``), a volume
for a 3D model and single pictures for a 2D one, and image sizes from half the smallest to four times the largest
seen in training (recorded in ``bundle.info["image_shape"]`` when the bundle was written). Every choice is logged
with the reason each other series was passed over.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medlens.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)
RULES_FILE = "series_rules.yaml"
# dataset modalities that are not DICOM Modality codes, as the codes a PACS uses for them
_DICOM_MODALITIES = {"XR": ["CR", "DX"], "MRI": ["MR"], "OT": []}
# derived objects are never a model's input
NOT_IMAGES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO", "REG", "DOC"})


class SeriesRules(BaseModel):
    """The series a model takes (see the module docstring for the file and the defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    modalities: list[str] = Field(default_factory=list, description="DICOM Modality codes; empty: any")
    body_parts: list[str] = Field(default_factory=list, description="BodyPartExamined values; empty: any")
    description_pattern: str | None = Field(None, description="regular expression the SeriesDescription must match")
    exclude_pattern: str | None = Field(None, description="regular expression a SeriesDescription must not match")
    min_size: int = Field(1, ge=1, le=65535, description="rows and columns, each, at least")
    max_size: int = Field(65535, ge=1, le=65535, description="rows and columns, each, at most")
    min_images: int = Field(1, ge=1, description="images in the series, at least")
    max_images: int = Field(100000, ge=1, description="images in the series, at most")
    notes: list[str] = Field(default_factory=list, description="where each default came from")

    @field_validator("description_pattern", "exclude_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression ({exc})") from None
        return value

    @field_validator("modalities", "body_parts")
    @classmethod
    def _upper(cls, values: list[str]) -> list[str]:
        return [v.strip().upper() for v in values if v.strip()]

    @model_validator(mode="after")
    def _ordered(self) -> SeriesRules:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is larger than max_size {self.max_size}")
        if self.min_images > self.max_images:
            raise ValueError(f"min_images {self.min_images} is larger than max_images {self.max_images}")
        return self

    def refusal(self, series: SeriesFacts) -> str | None:
        """Why the model does not take ``series``, or None when it does."""
        if series.modality.upper() in NOT_IMAGES:
            return f"a {series.modality} object, not images"
        if self.modalities and series.modality.upper() not in self.modalities:
            return f"modality {series.modality or '(none)'} is not one of {', '.join(self.modalities)}"
        if self.body_parts and series.body_part.upper() not in self.body_parts:
            return f"body part {series.body_part or '(none)'} is not one of {', '.join(self.body_parts)}"
        if self.description_pattern and not re.search(self.description_pattern, series.description, re.I):
            return f"description {series.description!r} does not match {self.description_pattern!r}"
        if self.exclude_pattern and re.search(self.exclude_pattern, series.description, re.I):
            return f"description {series.description!r} matches the excluded {self.exclude_pattern!r}"
        if series.images and not self.min_images <= series.images <= self.max_images:
            return f"{series.images} images, the model takes {self.min_images} to {self.max_images}"
        if series.rows and series.columns:
            small, large = min(series.rows, series.columns), max(series.rows, series.columns)
            if small < self.min_size or large > self.max_size:
                return (
                    f"images of {series.rows} x {series.columns}, the model takes sizes {self.min_size} to "
                    f"{self.max_size}"
                )
        return None


@dataclass(frozen=True)
class SeriesFacts:
    """What the rules look at in one series (from a QIDO-RS answer or from received headers)."""

    series_uid: str
    modality: str = ""
    body_part: str = ""
    description: str = ""
    images: int = 0
    rows: int = 0
    columns: int = 0

    def summary(self) -> str:
        size = f", {self.rows} x {self.columns}" if self.rows else ""
        return (
            f"{self.series_uid} ({self.modality} {self.description or 'no description'!r}, {self.images} images{size})"
        )


def choose_series(rules: SeriesRules, series: Sequence[SeriesFacts]) -> tuple[SeriesFacts | None, dict[str, str]]:
    """The series the model takes (the one with most images when several qualify), and why each other was not.

    The choice and the reasons are logged.
    """
    refused = {s.series_uid: reason for s in series if (reason := rules.refusal(s)) is not None}
    fitting = [s for s in series if s.series_uid not in refused]
    chosen = max(fitting, key=lambda s: (s.images, s.rows * s.columns), default=None)
    for s in fitting:
        if s is not chosen:
            refused[s.series_uid] = f"fits, but {chosen.series_uid if chosen else '?'} has more images"
    for s in series:
        if s is chosen:
            log.info("series chosen: %s", s.summary())
        else:
            log.info("series passed over: %s: %s", s.summary(), refused[s.series_uid])
    return chosen, refused


def rules_for(bundle: Bundle) -> SeriesRules:
    """The bundle's rules: ``series_rules.yaml`` beside ``bundle.yaml`` when present, else the defaults."""
    path = Path(bundle.root) / RULES_FILE
    if path.is_file():
        return read_rules(path)
    return default_rules(bundle.plan.spatial_dims, bundle.info)


def read_rules(path: Path) -> SeriesRules:
    """Read and validate a rules file.

    Raises:
        InputError: not readable or not YAML.
        ConfigError: an unknown key or a bad value, named with the file.
    """
    from medlens.data.dataset import load_yaml

    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, "not a mapping of rule names to values")
    try:
        return SeriesRules.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "rules"
        raise ConfigError(f"{path}: {key}", first["msg"]) from None


def default_rules(spatial_dims: int, info: dict[str, Any]) -> SeriesRules:
    """Rules from what a model was trained on (see the module docstring)."""
    notes = []
    modality = str(info.get("modality") or "OT").upper()
    modalities = _DICOM_MODALITIES.get(modality, [modality])
    notes.append(
        f"modalities {modalities} from the training data's modality {modality}"
        if modalities
        else f"any modality (training data modality {modality})"
    )
    if spatial_dims == 3:
        images = (3, 100000)
        notes.append("a 3D model takes series of at least 3 images")
    else:
        images = (1, 1)
        notes.append("a 2D model takes single-image series")
    sizes = (1, 65535)
    shape = info.get("image_shape")
    if isinstance(shape, dict) and shape.get("min") and shape.get("max"):
        low, high = min(int(v) for v in shape["min"]), max(int(v) for v in shape["max"])
        sizes = (max(1, low // 2), min(65535, high * 4))
        notes.append(f"image sizes {sizes[0]} to {sizes[1]}: half the smallest and 4x the largest seen in training")
    return SeriesRules(
        modalities=modalities,
        min_images=images[0],
        max_images=images[1],
        min_size=sizes[0],
        max_size=sizes[1],
        notes=notes,
    )
