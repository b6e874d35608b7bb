"""Start from a local checkpoint: plain state dicts, Lightning and timm checkpoints, safetensors files.

``model.pretrained`` (:func:`load_pretrained`) starts a whole network from a checkpoint; ``model.init``
(:func:`load_init`) starts it from a ``medlens pretrain`` encoder (or any weights file), by name and shape, and
reports what it loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medlens.core.errors import InputError

log = logging.getLogger(__name__)
_PREFIXES = ("model.", "module.", "net.", "network.", "backbone.")


def load_plain(path: Path) -> object:
    """``torch.load`` of a file that may come from elsewhere: tensors and plain Python values only
    (``weights_only=True``), never code; a refusal is an error naming the file, in one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for such files
        text = str(exc)
        blocked = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
        reason = blocked or (text.splitlines()[0][:160] if text else type(exc).__name__)
        raise InputError(path, f"refused: not a plain checkpoint of tensors ({reason})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights from a ``.safetensors`` file or a torch checkpoint (nested ``state_dict``/``model`` keys too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pretrained checkpoint not found")
    state: object
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise InputError(path, f"not a readable safetensors file ({str(exc).splitlines()[0][:160]})") from None
    else:
        state = load_plain(path)
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "holds no state dict of tensors")
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    """Remove wrapper prefixes, however nested (``module.net.conv1.weight`` -> ``conv1.weight``)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a convolution weight (O, I, *kernel) to ``in_channels`` inputs, in 2D or 3D.

    One channel gets the sum over the checkpoint's channels; otherwise channels are cycled and scaled by
    ``I / in_channels``. Either way an image whose channels are all equal gives the same response as before
    (gray into an RGB checkpoint, or gray repeated into a gray checkpoint). The rule is timm's
    ``adapt_input_conv``, written out because that one takes 2D, 3-channel weights only.
    """
    source = weight.shape[1]
    w = weight.float()
    if in_channels == 1:
        out = w.sum(dim=1, keepdim=True)  # (O, 1, *kernel)
    else:
        repeat = -(-in_channels // source)
        out = w.repeat(1, repeat, *[1] * (w.ndim - 2))[:, :in_channels] * (source / in_channels)
    return out.to(weight.dtype)


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load matching weights into ``model``; adapt the input convolution, leave a mismatched head as built."""
    state = read_state_dict(path)
    own = model.state_dict()
    input_conv = next((k for k, v in own.items() if v.ndim >= 4), None)  # the first convolution weight
    loaded, replaced = {}, []
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            loaded[key] = value
        elif key == input_conv and value.shape[:1] + value.shape[2:] == target.shape[:1] + target.shape[2:]:
            loaded[key] = adapt_input_channels(value, target.shape[1])  # only the input channels differ
        else:
            replaced.append(key)
    if not loaded:
        raise InputError(Path(path), "no weight in the checkpoint matches this model (is it the same architecture?)")
    missing = [k for k in own if k not in loaded]
    model.load_state_dict(loaded, strict=False)
    log.info(
        "pretrained %s: %d tensors loaded, %d kept as initialised (head or new layers%s)",
        path,
        len(loaded),
        len(missing),
        f"; shape-mismatched: {', '.join(replaced[:4])}" if replaced else "",
    )


@dataclass
class InitReport:
    """What :func:`load_init` put into a network: the tensors loaded and those skipped, with the reason."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # checkpoint tensor -> why it was not loaded
    kept: list[str] = field(default_factory=list)  # network tensors left as built (the head, new layers)

    def counts(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": len(self.loaded), "skipped": len(self.skipped), "kept": len(self.kept)}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "loaded_tensors": self.loaded,
            "skipped_tensors": self.skipped,
            "kept_tensors": self.kept,
        }


def init_weights_file(path: str | Path) -> Path:
    """The weights file of ``model.init``: ``encoder.safetensors`` in a pretrain folder, or the file itself."""
    path = Path(path)
    if path.is_dir():
        weights = path / "encoder.safetensors"
        if not weights.is_file():
            raise InputError(path, "not a pretrain folder (no encoder.safetensors); make one with 'medlens pretrain'")
        return weights
    if not path.is_file():
        raise InputError(path, "model.init: no such pretrain folder or weights file")
    return path


def check_init(path: str | Path, *, spatial_dims: int, channels: int) -> None:
    """Refuse a ``model.init`` whose spatial dimensions or input channels do not fit the task, naming the file.

    A pretrain folder says them in ``pretrain.yaml``; a plain weights file by its convolutions' shapes (their
    number of spatial axes, and whether one of them takes ``channels`` inputs).
    """
    path = Path(path)
    weights = init_weights_file(path)
    meta = path / "pretrain.yaml"
    if path.is_dir() and meta.is_file():
        import yaml

        info = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
        where, dims, chans = meta, info.get("spatial_dims"), info.get("channels")
    else:
        convs = [v for v in read_state_dict(weights).values() if v.ndim >= 4]  # (out, in, *kernel)
        where, dims, chans = weights, (convs[0].ndim - 2 if convs else None), None
        if convs and all(v.shape[1] != channels for v in convs):  # the input convolution is none of them
            chans = min(int(v.shape[1]) for v in convs)
    if dims is not None and int(dims) != spatial_dims:
        raise InputError(where, f"pretrained in {dims}D; this task is {spatial_dims}D (model.init)")
    if chans is not None and int(chans) != channels:
        raise InputError(where, f"pretrained on {chans} input channel(s); this task has {channels} (model.init)")


def load_init(model: nn.Module, path: str | Path, *, spatial_dims: int, channels: int) -> InitReport:
    """Load the tensors of a pretrain folder or weights file into ``model`` where name and shape both match, and
    report which were loaded, which skipped (and why) and which network tensors stay as built.

    Loading is pickle-free (safetensors, or ``torch.load(weights_only=True)``: :func:`read_state_dict`).

    Raises:
        InputError: the file is missing or unreadable, was pretrained for other dimensions or channels
            (:func:`check_init`), or none of its tensors fits the network.
    """
    check_init(path, spatial_dims=spatial_dims, channels=channels)
    weights = init_weights_file(path)
    state = read_state_dict(weights)
    own = model.state_dict()
    report = InitReport(str(path))
    take = {}
    for key, value in state.items():
        if key not in own:
            report.skipped[key] = "no tensor of that name in the network"
        elif tuple(value.shape) != tuple(own[key].shape):
            report.skipped[key] = f"shape {list(value.shape)}, the network's is {list(own[key].shape)}"
        else:
            take[key] = value
            report.loaded.append(key)
    if not any(v.is_floating_point() for v in take.values()):  # batch-norm step counters alone are no encoder
        raise InputError(weights, "model.init: no tensor matches the network by name and shape (another backbone?)")
    model.load_state_dict(take, strict=False)
    report.kept = [k for k in own if k not in take]
    log.info(
        "model.init %s: %d tensors loaded, %d skipped, %d network tensors kept as built",
        path,
        len(report.loaded),
        len(report.skipped),
        len(report.kept),
    )
    return report
