"""What an explanation method needs to know about one model and one input: the :class:`Explainer` a task hands over.

A task (through ``Task.explainer``) turns a bundle, an input image and a target (a class, a region's class, a box)
into an :class:`Explainer`: the network input ``x`` on the network's grid, a module and the layers the CAM family
reads, the target the CAM family differentiates, the score deletion and insertion follow, the value a removed pixel
takes, and the way from a map on ``x``'s grid back to the input's own geometry. The methods (:mod:`.methods`) and the
faithfulness measures (:mod:`.faithfulness`) know nothing else about tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.core.image import Image


@dataclass
class Explainer:
    """One input of one model, ready to be explained.

    Attributes:
        image: the input as given (for overlays and DICOM output).
        x: the network input ``(1, C, *spatial)`` on the network's grid (normalised as the network sees it).
        module: maps a batch like ``x`` to the output ``cam_target`` reads (the members together).
        layers: the feature layers the CAM family reads (one per member; their maps are averaged).
        cam_target: one example's output of ``module`` -> the scalar the gradient CAMs differentiate.
        score: a batch like ``x`` -> ``(B,)`` the model's score for the target (a probability, a box score, a
            value); deletion and insertion follow it, occlusion and integrated gradients attribute it.
        target: what is explained, in words (a class name, ``"anterior region"``, a box).
        to_image: a map on ``x``'s spatial grid -> an :class:`Image` of kind ``scalar`` in the input's geometry.
        baseline: the value of a removed pixel in ``x``'s units (the mean intensity: 0 after z-scoring).
        rebuild: the same input and target with other member networks (the randomisation check).
        reshape_transform: turns a layer's output into ``(B, C, *spatial)`` (detection: the FPN levels).
        batch_size: inputs per forward pass when many perturbed copies are scored.
        occlusion_window: occluded patch per spatial axis (default: about a seventh of each axis).
        occlusion_stride: occlusion step per spatial axis (default: half the window in 2D, the window in 3D).
    """

    image: Image
    x: torch.Tensor
    module: nn.Module
    layers: list[nn.Module]
    cam_target: Callable[[Any], torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor]
    target: str
    to_image: Callable[[np.ndarray], Image]
    baseline: float = 0.0
    rebuild: Callable[[Sequence[nn.Module]], Explainer] | None = field(default=None, repr=False)
    reshape_transform: Callable[[Any], torch.Tensor] | None = field(default=None, repr=False)
    batch_size: int = 32
    occlusion_window: tuple[int, ...] | None = None
    occlusion_stride: tuple[int, ...] | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[2:])

    def with_networks(self, networks: Sequence[nn.Module]) -> Explainer:
        """The same input and target explained with other member networks (e.g. randomly initialised ones)."""
        if self.rebuild is None:
            raise ConfigError("explainer", "this explainer cannot be rebuilt with other networks")
        return self.rebuild(networks)

    def scores(self, batch: torch.Tensor) -> np.ndarray:
        """``score`` over a batch of any length, ``batch_size`` at a time, without gradients: ``(N,)`` float64."""
        out = []
        with torch.no_grad():
            for i in range(0, len(batch), self.batch_size):
                out.append(self.score(batch[i : i + self.batch_size]).detach().float().cpu().reshape(-1))
        return torch.cat(out).numpy().astype(np.float64)

    def evolve(self, **changes: Any) -> Explainer:
        """A copy with some fields changed."""
        return replace(self, **changes)


class Ensemble(nn.Module):
    """The members of a bundle as one module: the mean of their outputs (logits, or values)."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x) for net in self.members]).mean(0)


def feature_layer(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last direct child of ``net`` whose output is still a feature map (``(B, C, *spatial)`` with more than one
    position), found by one forward pass: ``layer4`` of a ResNet, ``features`` of a DenseNet, the last norm of an
    EfficientNet. The CAM family reads it (the usual choice: the last convolutional features before pooling).

    Raises:
        ConfigError: when no child gives a feature map (a network the CAM family cannot read).
    """
    found: list[nn.Module] = []
    handles = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == x.ndim and int(np.prod(output.shape[2:])) > 1:
            found.append(module)

    for child in net.children():
        handles.append(child.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise ConfigError("model", f"{type(net).__name__} has no feature-map layer for class activation maps")
    return found[-1]


def randomized_networks(build: Callable[[], nn.Module], count: int, seed: int = 0) -> list[nn.Module]:
    """``count`` networks built afresh (random initial weights, seeded), in eval mode: the model-randomisation
    sanity check's networks (Adebayo et al. 2018, all layers re-initialised at once)."""
    nets = []
    state = torch.random.get_rng_state()
    try:
        for i in range(count):
            torch.manual_seed(seed + i)
            nets.append(build().eval())
    finally:
        torch.random.set_rng_state(state)
    return nets
