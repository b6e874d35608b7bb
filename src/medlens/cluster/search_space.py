"""The search space of ``medlens tune``: plan keys and the distributions their values are drawn from.

A dimension is written ``KEY=DISTRIBUTION(ARGS)``, for example ``optim.lr=loguniform(1e-4, 1e-2)``,
``model.kwargs.widen_factor=choice(0.25, 0.5)`` or ``augment.rotate_degrees=uniform(0, 30)``; the arguments are read
as YAML values (never evaluated as code: a search space travels like a plan). Each trial is an ordinary training run
with one ``--set KEY=VALUE`` per dimension. :func:`default_space` derives a space from the dataset's plan by stated
rules; a user's dimensions replace the default one of the same key, or add to them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from medlens.core.errors import ConfigError
from medlens.training.plan import Plan

KINDS = ("loguniform", "uniform", "choice", "randint")
_FORM = re.compile(r"^\s*(?P<key>[A-Za-z0-9_.]+)\s*=\s*(?P<kind>[a-z]+)\s*\((?P<args>.*)\)\s*$")


@dataclass(frozen=True)
class Dimension:
    """One plan key searched over.

    Attributes:
        key: the plan key (``optim.lr``), as ``--set`` takes it.
        kind: ``loguniform``/``uniform`` (between two numbers), ``randint`` (integers in [low, high)) or ``choice``.
        values: the two bounds, or the choices.
        why: the rule that chose it (default dimensions) or ``"given"``.
    """

    key: str
    kind: str
    values: tuple[Any, ...]
    why: str = "given"

    def text(self) -> str:
        """The dimension as written on the command line."""
        return f"{self.key}={self.kind}({', '.join(written(v) for v in self.values)})"

    def to_tune(self) -> Any:
        """The Ray Tune distribution."""
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "randint":
            return tune.randint(*self.values)
        return tune.choice(list(self.values))


def parse_dimension(item: str) -> Dimension:
    """A dimension from its written form.

    Raises:
        ConfigError: naming the item and what is wrong with it.

    Example:
        >>> parse_dimension("optim.lr=loguniform(1e-4, 1e-2)").values
        (0.0001, 0.01)
    """
    match = _FORM.match(item)
    if match is None:
        raise ConfigError(item, "a search dimension is written KEY=KIND(ARGS), e.g. optim.lr=loguniform(1e-4, 1e-2)")
    key, kind = match["key"], match["kind"]
    if kind not in KINDS:
        raise ConfigError(item, f"{kind!r} is not a distribution ({', '.join(KINDS)})")
    try:
        values = yaml.safe_load(f"[{match['args']}]")
    except yaml.YAMLError:
        raise ConfigError(item, "the arguments are not readable values") from None
    if not values:
        raise ConfigError(item, "no values given")
    values = [float(v) if isinstance(v, str) and _is_number(v) else v for v in values]  # YAML reads 1e-4 as text
    if kind == "choice":
        return Dimension(key, kind, tuple(values))
    if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ConfigError(item, f"{kind} takes two numbers, low and high")
    low, high = values
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(item, f"{kind} needs low < high{' and low > 0' if kind == 'loguniform' else ''}")
    if kind == "randint":
        return Dimension(key, kind, (int(low), int(high)))
    return Dimension(key, kind, (float(low), float(high)))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def default_space(plan: Plan) -> list[Dimension]:
    """The space searched when none is given, from the plan's own values, over the keys the plan has:

    - learning rate: log-uniform from a tenth to three times the plan's;
    - width (``model.kwargs.widen_factor``): half, the plan's, and double (at most 1);
    - augmentation strength: rotation from none to twice the plan's (at least 20 degrees), shift likewise (at least
      0.1 of the image);
    - loss weights: label smoothing from none to 0.2, and the class weights as planned or none (when planned).
    """
    raw = plan.model_dump()
    space: list[Dimension] = []
    lr = float(plan.optim.lr)
    space.append(Dimension("optim.lr", "loguniform", (lr / 10, lr * 3), "a tenth to three times the planned rate"))
    width = raw["model"].get("kwargs", {}).get("widen_factor")
    if isinstance(width, int | float):
        widths = sorted({round(w, 4) for w in (width / 2, width, min(2 * width, 1.0))})
        space.append(Dimension("model.kwargs.widen_factor", "choice", tuple(widths), "half, planned and double width"))
    rotate = float(plan.augment.rotate_degrees)
    space.append(Dimension("augment.rotate_degrees", "uniform", (0.0, min(180.0, max(2 * rotate, 20.0))),
                           "augmentation strength: none to twice the planned rotation"))  # fmt: skip
    shift = float(plan.augment.translate)
    space.append(Dimension("augment.translate", "uniform", (0.0, min(1.0, max(2 * shift, 0.1))),
                           "augmentation strength: none to twice the planned shift"))  # fmt: skip
    for section, options in raw.items():
        if not isinstance(options, dict):
            continue
        if "label_smoothing" in options:
            space.append(Dimension(f"{section}.label_smoothing", "uniform", (0.0, 0.2), "loss: label smoothing"))
        if options.get("class_weights") is not None:
            space.append(Dimension(f"{section}.class_weights", "choice", (options["class_weights"], None),
                                   "loss weights: the planned class weights or none"))  # fmt: skip
    return space


def resolve_space(plan: Plan, given: Sequence[str], *, defaults: bool = True) -> list[Dimension]:
    """The default space (unless ``defaults`` is False) with the ``given`` dimensions replacing or adding keys.

    Raises:
        ConfigError: a dimension that is not well written, or no dimension at all.
    """
    chosen = {d.key: d for d in (default_space(plan) if defaults else [])}
    for item in given:
        dimension = parse_dimension(item)
        chosen[dimension.key] = dimension
    if not chosen:
        raise ConfigError("--space", "nothing to search over (give at least one --space KEY=KIND(ARGS))")
    return list(chosen.values())


def overrides(config: dict[str, Any]) -> list[str]:
    """A trial's values as ``--set`` overrides (``key=value``, values written as YAML)."""
    return [f"{key}={written(value)}" for key, value in config.items()]


def written(value: Any) -> str:
    """A value as YAML on one line (``0.001``, ``[1.0, 0.5]``, ``null``)."""
    if isinstance(value, float):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
