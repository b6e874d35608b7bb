"""A frozen image encoder: images to embedding vectors, from a trained medlens model or a pretrained encoder.

Two kinds of encoder, both local files (medlens downloads none):

- a **bundle** (a run folder or its ``bundle/``) of an image network with a final linear layer (a classification or
  regression model): the embedding is the input of that layer, the network's penultimate features, of the first
  member (the others, other seeds of the same network, are not read);
- a **pretrain folder** (``medlens pretrain``: ``encoder.safetensors`` beside ``pretrain.yaml``, the weights that
  ``model.init`` takes): the network ``pretrain.yaml`` names, built headless as pretraining built it, with those
  weights; the embedding is its output. A weights file alone does not say which network it belongs to, so it is
  taken only inside its pretrain folder.

Either way images are prepared as the encoder was trained to read them (its ``DataPlan``: channels, input size,
intensity) and the encoder is identified by the SHA-256 of its weights file (``digest``), so that an embedding
computed later can be checked to come from the same weights.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medlens.core.errors import InputError
from medlens.core.progress import ProgressFn
from medlens.core.progress import report as report_progress
from medlens.training.plan import DataPlan

log = logging.getLogger(__name__)


@dataclass
class ImageEncoder:
    """A frozen network from prepared images ``(B, C, *size)`` to embeddings ``(B, dim)``."""

    path: str
    kind: str  # "bundle" or "pretrain"
    net: nn.Module
    data: DataPlan
    dim: int
    digest: str
    description: str
    meta: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What identifies the encoder (kept with the embeddings it made)."""
        return {
            "encoder": self.path,
            "kind": self.kind,
            "digest": self.digest,
            "dim": self.dim,
            "description": self.description,
        }

    @torch.inference_mode()
    def embed(self, paths: Sequence[Path], progress: ProgressFn | None = None, batch_size: int = 64) -> np.ndarray:
        """The embedding of each image file, ``(len(paths), dim)`` float32.

        Raises:
            InputError: naming the file, when it is missing, unreadable, not finite or of other dimensions.
        """
        from medlens.core.image import require_finite
        from medlens.io import read_image
        from medlens.training.images import normalize, to_input

        out: list[np.ndarray] = []
        batch: list[np.ndarray] = []

        def run() -> None:
            x = normalize(torch.from_numpy(np.stack(batch)), self.data)
            out.append(self.net(x).flatten(1).float().numpy())
            batch.clear()

        for i, path in enumerate(paths):
            if not Path(path).exists():
                raise InputError(path, "image not found")
            image = require_finite(read_image(Path(path)), source=str(path), doing="embed")
            batch.append(to_input(image, self.data, source=str(path)))
            if len(batch) >= batch_size:
                run()
                report_progress(progress, "embedding images", i + 1, len(paths))
        if batch:
            run()
        report_progress(progress, "embedding images", len(paths), len(paths))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def load_encoder(path: str | Path) -> ImageEncoder:
    """The frozen encoder in ``path``: a medlens run or bundle folder, or a ``medlens pretrain`` folder.

    Raises:
        InputError: naming the path, when it is neither, or when the bundle's network has no final linear layer.
    """
    path = Path(path)
    if (path / "pretrain.yaml").is_file():
        return _pretrain_encoder(path)
    if (path / "bundle.yaml").is_file() or (path / "bundle" / "bundle.yaml").is_file():
        return _bundle_encoder(path)
    if path.is_file():
        raise InputError(path, "a weights file alone does not name its network: give the 'medlens pretrain' folder "
                         "holding it (encoder.safetensors beside pretrain.yaml), or a medlens run")  # fmt: skip
    raise InputError(path, "not an image encoder: give a medlens run or bundle folder (its network's penultimate "
                     "features are used) or a 'medlens pretrain' folder")  # fmt: skip


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _bundle_encoder(path: Path) -> ImageEncoder:
    from medlens.tasks import load_bundle

    bundle = load_bundle(path)
    if bundle.task.model_output != "image":  # one output per image: a head whose input is the image's features
        raise InputError(
            path,
            f"a {bundle.task.name} model is no image encoder: give a classification or regression run (its "
            "penultimate features are used) or a 'medlens pretrain' folder",
        )
    net = copy.deepcopy(bundle.networks()[0]).eval()
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(path, "the network has no final linear layer to take its penultimate features before")
    name, head = linears[-1]
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())  # the head's input is the output
    for p in net.parameters():
        p.requires_grad_(False)
    weights = bundle.root / bundle.members[0]
    return ImageEncoder(
        path=str(Path(path).resolve()),
        kind="bundle",
        net=net,
        data=bundle.plan.data,
        dim=int(head.in_features),
        digest=file_digest(weights),
        description=f"penultimate features of the {bundle.task.name} model {bundle.name} ({bundle.plan.model.name}, "
        f"member 0 of {len(bundle.members)}): the {head.in_features} inputs of its final linear layer",
    )


def _pretrain_encoder(path: Path) -> ImageEncoder:
    import yaml
    from safetensors.torch import load_file

    from medlens.training.pretraining import build_encoder

    info = yaml.safe_load((path / "pretrain.yaml").read_text(encoding="utf-8")) or {}
    weights = path / "encoder.safetensors"
    if not weights.is_file():
        raise InputError(path, "pretrain folder without encoder.safetensors")
    try:
        backbone, dims = info["backbone"], int(info["spatial_dims"])
        intensity = info.get("intensity", {})
        data = DataPlan(
            input_size=list(info["input_size"]),
            channels=int(info["channels"]),
            **{
                k: intensity[k] for k in ("normalization", "mean", "std", "clip", "fit") if intensity.get(k) is not None
            },
        )
        net, dim = build_encoder(
            backbone["name"], dict(backbone.get("kwargs") or {}), spatial_dims=dims, channels=data.channels,
            input_size=list(data.input_size),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path / "pretrain.yaml", f"not a pretrain record medlens can rebuild ({exc})") from None
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit {backbone['name']} ({str(exc).splitlines()[0]})") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return ImageEncoder(
        path=str(path.resolve()),
        kind="pretrain",
        net=net,
        data=data,
        dim=dim,
        digest=file_digest(weights),
        description=f"the {info.get('method', 'self-supervised')} pretrained encoder {backbone['name']} "
        f"({dim} features) of {path.name}",
    )
