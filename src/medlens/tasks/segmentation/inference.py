"""From a prepared image to class probabilities and a cleaned label map: MONAI's Gaussian sliding window over
every member (and mirrored copies with test-time augmentation), and MONAI's keep-largest-component."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import cast

import numpy as np
import torch
from torch import nn

from medlens.tasks.segmentation.config import SegmentationPlan


@torch.inference_mode()
def sliding_window_probabilities(
    nets: Sequence[nn.Module], image: torch.Tensor, plan: SegmentationPlan, *, tta: bool = False
) -> torch.Tensor:
    """Softmax probabilities (K, *spatial) of a prepared image (C, *spatial), averaged over the members
    and, with ``tta``, over every combination of mirrored axes in ``plan.segmentation.mirror_axes``."""
    return sliding_window_passes(nets, image, plan, tta=tta)[0]


@torch.inference_mode()
def sliding_window_passes(
    nets: Sequence[nn.Module], image: torch.Tensor, plan: SegmentationPlan, *, tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Like :func:`sliding_window_probabilities`, and the voxels' mean entropy over the passes (members x
    mirrorings), for the member disagreement (mutual information = entropy of the mean - mean entropy).

    Returns:
        ``(probabilities (K, *spatial), mean entropy of the passes (*spatial) in nats, number of passes)``.
    """
    from monai.inferers import sliding_window_inference

    seg = plan.segmentation
    x = image[None].float()  # (1, C, *spatial)
    flips: list[tuple[int, ...]] = [()]
    if tta:
        axes = [a + 2 for a in seg.mirror_axes if x.shape[a + 2] > 1]
        flips = [c for r in range(len(axes) + 1) for c in combinations(axes, r)]
    total: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    for net in nets:
        for flip in flips:
            xi = torch.flip(x, flip) if flip else x
            logits = sliding_window_inference(
                xi,
                roi_size=plan.data.input_size,
                sw_batch_size=seg.sw_batch_size,
                predictor=net,
                overlap=seg.sw_overlap,
                mode=seg.sw_mode,
            )
            probs = torch.softmax(cast(torch.Tensor, logits).float(), dim=1)
            probs = torch.flip(probs, flip) if flip else probs
            total = probs if total is None else total + probs
            h = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)  # (1, *spatial) this pass's entropy
            entropy = h if entropy is None else entropy + h
    passes = len(nets) * len(flips)
    return (cast(torch.Tensor, total) / passes)[0], (cast(torch.Tensor, entropy) / passes)[0], passes


def keep_largest_component(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Set every voxel of ``classes`` outside that class's largest connected component to background
    (MONAI's ``KeepLargestConnectedComponent``, each class on its own, face-connected components)."""
    if not classes:
        return labels
    from monai.transforms import KeepLargestConnectedComponent

    keep = KeepLargestConnectedComponent(
        applied_labels=list(classes), is_onehot=False, independent=True, connectivity=1
    )
    out = keep(torch.from_numpy(labels[None].astype(np.int64)))
    return np.asarray(out)[0].astype(labels.dtype)
