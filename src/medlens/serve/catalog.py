"""The models a service serves: each a bundle loaded once, with its name, version and what ``/v1/models`` says."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.errors import ConfigError

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

INPUT_KINDS = {2: ["png", "jpeg", "tiff", "dicom"], 3: ["nifti", "nrrd", "mha", "dicom-series-zip", "dicom"]}


@dataclass
class ServedModel:
    """A loaded bundle under the name the service gives it."""

    name: str
    run: Path
    bundle: Bundle
    version: str

    @property
    def batch_size(self) -> int:
        return max(1, self.bundle.task.batch_size)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` answers for this model."""
        plan = self.bundle.plan
        return {
            "name": self.name,
            "task": plan.task,
            "spatial_dims": plan.spatial_dims,
            "classes": list(self.bundle.class_names),
            "input_kinds": INPUT_KINDS.get(plan.spatial_dims, []),
            "version": self.version,
            "created": self.bundle.info.get("created") or _created(self.bundle.root),
            "members": len(self.bundle.members),
            "model_card": card_summary(self.bundle.root / "model_card.md"),
        }


def parse_models(specs: list[str]) -> dict[str, Path]:
    """``RUN`` or ``NAME=RUN`` arguments to names and run folders (a name defaults to the run folder's name).

    Raises:
        ConfigError: for a name given twice or an empty name.
    """
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, run = spec.partition("=")
        path = Path(run if sep else spec)
        if not sep:
            resolved = path.resolve()
            name = resolved.parent.name if resolved.name == "bundle" else resolved.name
        if not name or "/" in name:
            raise ConfigError("RUN", f"{spec!r}: a model name is not empty and holds no '/'")
        if name in models:
            raise ConfigError("RUN", f"two models are named {name!r}; give one another name with NAME=RUN")
        models[name] = path
    if not models:
        raise ConfigError("RUN", "name at least one run folder to serve")
    return models


def load_models(runs: dict[str, Path]) -> dict[str, ServedModel]:
    """Load every bundle and its networks now, so a broken bundle stops the service before it answers."""
    from medlens.tasks.base import load_bundle

    served = {}
    for name, run in runs.items():
        bundle = load_bundle(run)
        bundle.networks()
        served[name] = ServedModel(name, Path(run), bundle, bundle_version(bundle.root, bundle.members))
    return served


def bundle_version(root: Path, members: list[str]) -> str:
    """The first 12 hex digits of a SHA-256 over ``bundle.yaml`` and the weights: a new training is a new version."""
    digest = hashlib.sha256()
    for name in ["bundle.yaml", *members]:
        with open(root / name, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def card_summary(path: Path) -> list[str]:
    """The model card's bullet lines (task, network, data, ensemble, choices) and its intended-use sentence."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    bullets = [line[2:].strip() for line in lines if line.startswith("- ")]
    use: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("## "):
            inside = line.lower().startswith("## intended use")
        elif inside and line.strip():
            use.append(line.strip())
        elif inside and use:
            break
    return bullets + ([" ".join(use)] if use else [])


def _created(root: Path) -> str | None:
    import yaml

    try:
        spec = yaml.safe_load((root / "bundle.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return str(spec.get("created")) if isinstance(spec, dict) and spec.get("created") else None
