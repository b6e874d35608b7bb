"""The generator folder: what was trained on what (``generator.yaml``) beside its weights.

Layout::

    GEN/
      .medlens                # made by medlens (kind: generator)
      generator.yaml          # GeneratorSpec: model, classes, channels, size, intensity range, network, training
      generator.safetensors   # the network that makes images (the EMA weights for diffusion)
      samples.png             # a grid of generated images, one row per class

Weights are safetensors: loading a generator never unpickles anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medlens.core.errors import ConfigError, InputError

SPEC_FILE = "generator.yaml"
WEIGHTS_FILE = "generator.safetensors"
SAMPLES_FILE = "samples.png"
FORMAT = "medlens-generator/1"
ModelKind = Literal["diffusion", "gan"]


class GeneratorSpec(BaseModel):
    """The contents of ``generator.yaml``.

    Attributes:
        model: ``diffusion`` (class-conditional DDPM, DDIM sampling) or ``gan`` (conditional DCGAN).
        classes: the dataset's class names; a generated image's class is its index here.
        class_counts: training images per class (sampling without a class follows these proportions).
        channels: the dataset's channel names.
        size: generated image size (height, width); training images were resized to it.
        intensity: (low, high) of the training images; generated images in [-1, 1] map back onto it.
        network: the network's constructor arguments.
        training: what training did (steps, images seen, minutes, last loss, seed).
        dataset: where the training images came from (path, name, modality).
    """

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    model: ModelKind
    classes: list[str]
    class_counts: list[int]
    channels: list[str]
    size: tuple[int, int]
    intensity: tuple[float, float]
    network: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, str] = Field(default_factory=dict)


def save_spec(folder: Path, spec: GeneratorSpec) -> None:
    from medlens.core.outputs import write_text_atomic

    write_text_atomic(folder / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


def load_spec(folder: str | Path) -> GeneratorSpec:
    """Read ``generator.yaml`` from a generator folder.

    Raises:
        InputError: not a generator folder, or an unreadable file.
        ConfigError: a key with an invalid value.
    """
    from medlens.data.dataset import load_yaml

    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise InputError(Path(folder), f"not a generator folder (no {SPEC_FILE}); make one with 'medlens synth train'")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, "not a mapping of keys to values")
    try:
        spec = GeneratorSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(str(p) for p in first['loc'])}", first["msg"]) from None
    if spec.format != FORMAT:
        raise InputError(path, f"format {spec.format!r}; this medlens reads {FORMAT!r}")
    if len(spec.class_counts) != len(spec.classes):
        raise InputError(path, f"{len(spec.class_counts)} class counts for {len(spec.classes)} classes")
    return spec
