"""``--set key=value`` and edited ``plan.yaml`` files, validated against the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from medlens.core.atomic import write_text_atomic
from medlens.core.errors import ConfigError, InputError
from medlens.plan.schema import Plan


def apply_overrides(plan: Plan, overrides: list[str]) -> Plan:
    """Return a copy of ``plan`` with ``key.sub=value`` overrides applied (values parsed as YAML).

    Example:
        >>> from medlens.plan.schema import *
        >>> p = Plan(task="classification", spatial_dims=2, class_names=["a", "b"], data=DataPlan(input_size=[28, 28]),
        ...          augment=AugmentPlan(), model=ModelPlan(name="resnet18"), optim=OptimPlan(), train=TrainPlan())
        >>> apply_overrides(p, ["optim.lr=0.01", "train.batch_size=32"]).optim.lr
        0.01
    """
    raw = plan.model_dump()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override is written key=value (for example train.batch_size=32)")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _check_key(Plan, key.split("."), key)
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None and depth > 0:  # free-form dicts (model.kwargs) may gain nested keys
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(key, f"{'.'.join(parts[: depth + 1])} is a value, it has no sub-keys")
        node[parts[-1]] = value
    return validate_plan(raw, source="--set")


def _check_key(model: type[BaseModel], parts: list[str], key: str) -> None:
    fields = model.model_fields
    if parts[0] not in fields:
        raise ConfigError(key, f"unknown plan key (known here: {', '.join(fields)})")
    annotation = fields[parts[0]].annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        annotation = args[0]  # an optional section (``detection: DetectionPlan | None``)
    if len(parts) > 1:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_key(annotation, parts[1:], key)
        elif not (isinstance(annotation, type) and annotation is dict) and "dict" not in str(annotation):
            raise ConfigError(key, f"{parts[0]} has no sub-keys")


def validate_plan(raw: dict[str, Any], source: str) -> Plan:
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(key, f"{first['msg']} (in {source})") from None


def save_plan(plan: Plan, path: Path) -> None:
    text = "# medlens plan: every choice training makes. Edit, or override with --set key=value.\n"
    write_text_atomic(path, text + yaml.safe_dump(plan.model_dump(), sort_keys=False, width=110))


def load_plan(path: Path) -> Plan:
    if not path.is_file():
        raise InputError(path, "no plan.yaml (run 'medlens plan DATASET_DIR' first)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({exc})") from None
    return validate_plan(raw, source=str(path))
