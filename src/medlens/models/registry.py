"""A registry of networks by name, in the way of timm's ``_registry.py`` + ``_factory.py``.

A builder registers itself with the kind of output it gives and the spatial dimensions it serves; ``create_model``
looks the name up, checks it fits the request, and builds it. Nothing is found by walking folders. The kinds of
output (not task names) keep this layer free of tasks: every task says which kind its networks give
(``Task.model_output``), so a new task of a known kind needs no change here.

- ``image``: one vector per image (classification, multi-label, regression heads);
- ``pixel``: one vector per pixel or voxel (segmentation);
- ``boxes``: boxes with classes and scores (detection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from medlens.core.errors import ConfigError

OUTPUTS = ("image", "pixel", "boxes")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    output: str
    spatial_dims: tuple[int, ...]
    source: str
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, output: str, spatial_dims: tuple[int, ...], source: str, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(spatial_dims, in_channels, num_classes, input_size, **kwargs)``."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(
            name, builder, output, spatial_dims, source, description or (builder.__doc__ or "").strip()
        )
        return builder

    return add


def _load_builtin() -> None:
    from medlens.models import (
        classifiers,  # noqa: F401  (registration side effect)
        detectors,  # noqa: F401  (registration side effect)
        segmenters,  # noqa: F401  (registration side effect)
        slice_attention,  # noqa: F401  (registration side effect)
    )


def get_entry(name: str) -> ModelEntry:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError("model.name", f"unknown model {name!r} (see 'medlens models')")
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    output: str,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int] | tuple[int, ...],
    pretrained: str | None = None,
    private: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered network for a task.

    Args:
        name: registry name (``medlens models`` lists them).
        output: the kind of output wanted: ``image`` (one vector per image), ``pixel`` or ``boxes``.
        spatial_dims: 2 or 3.
        in_channels: input channels (any number).
        num_classes: outputs (classes, labels for multi-label, 1 for a value).
        input_size: spatial input size; small inputs (28-64 px) get a small-image stem.
        pretrained: a local checkpoint to start from (state dict, Lightning/timm checkpoint, safetensors);
            a head of another shape is replaced and input convolutions are adapted to ``in_channels``.
        private: made fit for differential privacy (BatchNorm -> GroupNorm, checked by Opacus: see
            :func:`medlens.training.privacy.compatible_network`), as a plan with ``train.privacy`` asks.

    Example:
        >>> m = create_model("resnet18", output="image", spatial_dims=2, in_channels=1, num_classes=2,
        ...                  input_size=[28, 28])
        >>> import torch; m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 2])
    """
    entry = get_entry(name)
    if output != entry.output:
        raise ConfigError("model.name", f"{name} gives {entry.output} outputs; this task needs {output} outputs")
    if spatial_dims not in entry.spatial_dims:
        raise ConfigError(
            "model.name", f"{name} is {'/'.join(map(str, entry.spatial_dims))}D, the data is {spatial_dims}D"
        )
    try:
        model = entry.builder(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            input_size=list(input_size),
            **kwargs,
        )
    except (TypeError, ValueError, RuntimeError) as exc:  # an argument the network does not take, a value it refuses
        raise ConfigError("model.kwargs", f"{name} cannot be built with {kwargs}: {exc}") from None
    if pretrained:
        from medlens.models.checkpoints import load_pretrained

        load_pretrained(model, pretrained)
    if private:
        from medlens.training.privacy import compatible_network

        model = compatible_network(model, name)
    return model


def list_models(output: str | None = None) -> list[dict[str, Any]]:
    """Name, output kind, dims, source and parameter count (2-class, 1-channel build) of every registered model."""
    _load_builtin()
    rows = []
    for entry in sorted(_REGISTRY.values(), key=lambda e: e.name):
        if output and output != entry.output:
            continue
        dims = entry.spatial_dims[0]
        model = entry.builder(spatial_dims=dims, in_channels=1, num_classes=2, input_size=[64] * dims)
        rows.append(
            {
                "name": entry.name,
                "output": entry.output,
                "spatial_dims": list(entry.spatial_dims),
                "source": entry.source,
                "parameters": sum(p.numel() for p in model.parameters()),
                "description": entry.description,
            }
        )
    return rows
