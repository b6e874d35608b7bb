"""``--set key=value`` and edited ``plan.yaml`` files, validated against the plan's own type.

These functions take the plan class to validate with (a task's ``plan_type``); which class belongs to which
task is the task registry's business (:func:`medlens.tasks.base.parse_plan`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import write_text_atomic
from medlens.training.plan import Plan, migrate

P = TypeVar("P", bound=Plan)


def apply_overrides(plan: P, overrides: list[str]) -> P:
    """Return a copy of ``plan`` with ``key.sub=value`` overrides applied (values parsed as YAML).

    Example:
        >>> from medlens.training.plan import *
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
        if not key:
            raise ConfigError(item, "an override is written key=value (for example train.batch_size=32)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _check_key(type(plan), key.split("."), key)
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None and depth > 0:  # free-form dicts (model.kwargs) may gain nested keys
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(key, f"{'.'.join(parts[: depth + 1])} is a value, it has no sub-keys")
        node[parts[-1]] = value
    return validate_plan(raw, type(plan), source="--set")


def _check_key(model: type[BaseModel], parts: list[str], key: str) -> None:
    fields = model.model_fields
    if parts[0] not in fields:
        raise ConfigError(key, f"unknown plan key (known here: {', '.join(fields)})")
    annotation = fields[parts[0]].annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        annotation = args[0]  # an optional section
    if len(parts) > 1:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_key(annotation, parts[1:], key)
        elif not (isinstance(annotation, type) and annotation is dict) and "dict" not in str(annotation):
            raise ConfigError(key, f"{parts[0]} has no sub-keys")


def validate_plan(raw: Any, plan_type: type[P], source: str) -> P:
    """Validate a plan mapping (migrated from older versions first) into ``plan_type``.

    Raises:
        ConfigError: naming the first offending key, what is wrong with it, and where it came from.
    """
    if not isinstance(raw, dict):
        raise ConfigError(source, "a plan is a mapping of sections (data, model, train, ...)")
    try:
        return plan_type.model_validate(migrate(raw, plan_type))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "plan"
        message = str(first["msg"]).removeprefix("Value error, ")
        value = first.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
        raise ConfigError(key, f"{message}{shown} (in {source})") from None


def save_plan(plan: Plan, path: Path) -> None:
    text = "# medlens plan: every choice training makes. Edit, or override with --set key=value.\n"
    write_text_atomic(path, text + yaml.safe_dump(plan.model_dump(), sort_keys=False, width=110))


def read_plan_mapping(path: Path) -> dict[str, Any]:
    """The raw mapping in a ``plan.yaml`` (validated by the caller against its task's plan type)."""
    from medlens.data.dataset import load_yaml

    if not path.is_file():
        raise InputError(path, "no plan.yaml (run 'medlens plan DATASET_DIR' first)")
    raw = load_yaml(path)  # not UTF-8, or not YAML: an error naming the line
    if not isinstance(raw, dict):
        raise InputError(path, "a plan is a mapping of sections (data, model, train, ...)")
    return raw
