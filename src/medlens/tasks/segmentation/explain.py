"""Why these voxels are this class: the explainer of a segmentation for one class's predicted region.

The whole case is prepared as prediction prepares it (normalised, reoriented, resampled: :mod:`.preprocessing`),
padded with zeros (the case's mean intensity after z-scoring, as the sliding window pads) to a size the network's
poolings divide, and run through the members at once (not window by window), so a map sees the whole case. The
target is a foreground class (default: the one with the most predicted voxels) and its region is the voxels the
model labels with it (the sliding window's arg-max on the network's grid, as prediction labels them). The CAM family
differentiates the members' mean logit of that class summed over the region (pytorch-grad-cam's
``SemanticSegmentationTarget``) at the last decoder stage (full resolution); deletion, insertion, occlusion and
integrated gradients follow the ensemble's mean probability of the class over the region. Maps come back through the
inverse of the padding and of MONAI's reorientation and resampling, to the input's own grid.

Memory grows with the case: a large CT explained whole needs the network's activations of the whole volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medlens.core.errors import ConfigError, InputError
from medlens.core.image import Image
from medlens.explanations.explainer import Ensemble, Explainer, feature_layer

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


def divisor(plan: Any) -> list[int]:
    """Per axis, the factor a whole-case input must be a multiple of (the product of the network's strides)."""
    strides = plan.segmentation.strides or []
    dims = len(plan.data.input_size)
    if not strides:
        return [16] * dims
    return [int(np.prod([s[a] for s in strides])) for a in range(dims)]


def cam_layer(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """DynUNet: its last decoder stage (full-resolution features before the output convolution); another network:
    its last feature-map child."""
    upsamples = getattr(net, "upsamples", None)
    if isinstance(upsamples, nn.ModuleList) and len(upsamples):
        return upsamples[-1]
    return feature_layer(net, x)


class RegionTarget:
    """The members' mean logit of class ``k`` summed over the region (pytorch-grad-cam's ``SemanticSegmentationTarget``,
    whose indexing is 2D-only in spirit; this one reads any number of spatial axes)."""

    def __init__(self, k: int, mask: torch.Tensor) -> None:
        self.k, self.mask = k, mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.k] * self.mask).sum()


def explainer(bundle: Bundle, image: Image, target: str | None = None) -> Explainer:
    """The explainer of ``image`` for ``target`` (a foreground class name; default: the largest predicted one)."""
    from medlens.tasks.segmentation.inference import sliding_window_probabilities
    from medlens.tasks.segmentation.preprocessing import check_image, prepare_image, to_input_grid

    plan = bundle.plan
    work = check_image(image, plan)  # type: ignore[arg-type]
    prepared = prepare_image(work, plan)  # type: ignore[arg-type]
    nets = bundle.networks()
    with torch.inference_mode():
        labels = sliding_window_probabilities(nets, prepared.tensor, plan).argmax(0)  # type: ignore[arg-type]
    names = bundle.class_names
    counts = torch.bincount(labels.reshape(-1), minlength=len(names))
    if target is None:
        if int(counts[1:].sum()) == 0:
            raise InputError(str(image.meta.get("source", "<memory>")), "no foreground predicted: nothing to explain")
        k = 1 + int(counts[1:].argmax())
    elif target in names[1:]:
        k = names.index(target)
        if int(counts[k]) == 0:
            raise InputError(str(image.meta.get("source", "<memory>")), f"no voxel predicted as {target}")
    else:
        raise ConfigError("--target", f"{target!r} is not a foreground class of this model ({', '.join(names[1:])})")
    shape = tuple(prepared.tensor.shape[1:])
    pads = [(-s) % d for s, d in zip(shape, divisor(plan), strict=True)]
    before = [p // 2 for p in pads]
    flat_pad = [v for a in reversed(range(len(shape))) for v in (before[a], pads[a] - before[a])]  # F.pad: last first
    x = F.pad(prepared.tensor.float()[None], flat_pad)  # (1, C, *padded)
    mask = F.pad((labels == k).float()[None, None], flat_pad)[0, 0]  # (*padded)
    inside = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    region = mask.bool()

    def to_image(values: np.ndarray) -> Image:
        cropped = torch.from_numpy(np.ascontiguousarray(values[inside], dtype=np.float32))[None]  # (1, *shape)
        back = to_input_grid(cropped, prepared, plan).numpy()  # type: ignore[arg-type]  # (1, *work grid)
        if work is not image:  # a one-slice volume segmented as a picture: (1, rows, cols) -> (1, cols, rows, 1)
            back = back.swapaxes(1, 2)[..., None]
        return Image(np.ascontiguousarray(back, dtype=np.float32), image.affine.copy(), "scalar")

    def build(networks: Sequence[nn.Module]) -> Explainer:
        members = list(networks)

        def score(batch: torch.Tensor) -> torch.Tensor:
            probs = torch.stack([torch.softmax(net(batch).float(), dim=1)[:, k] for net in members]).mean(0)
            return probs[:, region].mean(1)  # (B,)

        return Explainer(
            image=image,
            x=x,
            module=Ensemble(members).eval(),
            layers=[cam_layer(net, x) for net in members],
            cam_target=RegionTarget(k, mask),
            score=score,
            target=names[k],
            to_image=to_image,
            baseline=0.0,
            rebuild=build,
            batch_size=2,
        )

    return build(nets)
