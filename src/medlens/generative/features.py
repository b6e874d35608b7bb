"""Image features from a trained medlens classifier: its penultimate layer, the space quality is measured in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medlens.core.errors import InputError

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.models.bundle import Bundle


def _head(net: nn.Module) -> nn.Linear:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("bundle", "the classifier has no final linear layer to take features before")
    return linears[-1]


def feature_description(bundle: Bundle) -> str:
    head = _head(bundle.networks()[0])
    return (
        f"penultimate layer of the classifier trained on the real data ({bundle.plan.model.name}, member 0): the "
        f"{head.in_features} inputs of its final linear layer, on images prepared as the plan prepares them"
    )


@torch.inference_mode()
def penultimate_features(bundle: Bundle, images: Iterable[Image], batch_size: int = 256) -> np.ndarray:
    """The input of the first member's final linear layer for each image: (N, D) float32."""
    from medlens.training.images import normalize, to_input

    net = bundle.networks()[0]
    captured: list[torch.Tensor] = []
    hook = _head(net).register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    try:
        batch: list[np.ndarray] = []

        def run() -> None:
            x = normalize(torch.from_numpy(np.stack(batch)), bundle.plan.data)  # (B, C, *size)
            net(x)
            batch.clear()

        for image in images:
            batch.append(to_input(image, bundle.plan.data))
            if len(batch) >= batch_size:
                run()
        if batch:
            run()
    finally:
        hook.remove()
    if not captured:
        return np.zeros((0, _head(net).in_features), dtype=np.float32)
    return torch.cat(captured).flatten(1).numpy()  # (N, D)
