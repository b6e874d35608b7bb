"""Start from a local checkpoint: plain state dicts, Lightning and timm checkpoints, safetensors files."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from medlens.core.errors import InputError

log = logging.getLogger(__name__)
_PREFIXES = ("model.", "module.", "net.", "network.", "backbone.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights from a ``.safetensors`` file or a torch checkpoint (nested ``state_dict``/``model`` keys too)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pretrained checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "holds no state dict of tensors")
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load matching weights into ``model``; adapt input convolutions, leave a mismatched head as built."""
    from timm.models import adapt_input_conv

    state = read_state_dict(path)
    own = model.state_dict()
    loaded, replaced = {}, []
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            loaded[key] = value
        elif value.ndim >= 4 and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            loaded[key] = adapt_input_conv(target.shape[1], value)  # input channels differ: sum/repeat like timm
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
