"""Start from a local checkpoint: plain state dicts, Lightning and timm checkpoints, safetensors files."""

from __future__ import annotations

import logging
from pathlib import Path

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
