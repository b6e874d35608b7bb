"""Attributions on the input itself, from captum: occlusion (a patch at a time set to the baseline) and integrated
gradients (from the baseline image to the input). Both attribute the explainer's score; channels are summed."""

from __future__ import annotations

import math

import numpy as np
import torch

from medlens.explanations.explainer import Explainer
from medlens.explanations.methods import register_method

#: integration steps of integrated gradients (Gauss-Legendre, captum's default rule; captum's default count is 50)
IG_STEPS = 24
#: occlusion patches per axis, about (the window is a seventh of each axis)
OCCLUSION_PARTS = 7


def occlusion_geometry(explainer: Explainer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Window and stride per spatial axis: the explainer's, or a seventh of each axis with half-window steps in 2D
    and non-overlapping windows in 3D (7^3 = 343 forward passes rather than 13^3)."""
    shape = explainer.spatial_shape
    window = explainer.occlusion_window or tuple(max(1, math.ceil(s / OCCLUSION_PARTS)) for s in shape)
    stride = explainer.occlusion_stride or tuple(max(1, w // 2) if len(shape) == 2 else w for w in window)
    return window, stride


@register_method(
    "occlusion",
    family="perturbation",
    slow=True,
    description="occlusion (Zeiler and Fergus 2014): the score's drop as each patch is set to the baseline, captum",
)
def occlusion(explainer: Explainer) -> np.ndarray:
    from captum.attr import Occlusion

    window, stride = occlusion_geometry(explainer)
    channels = int(explainer.x.shape[1])
    with torch.no_grad():
        attribution = Occlusion(explainer.score).attribute(
            explainer.x,
            sliding_window_shapes=(channels, *window),
            strides=(channels, *stride),
            baselines=explainer.baseline,
            perturbations_per_eval=explainer.batch_size,
        )
    return attribution[0].sum(0).detach().float().numpy()


@register_method(
    "integrated-gradients",
    family="gradient",
    description="integrated gradients (Sundararajan et al. 2017) from the baseline image, captum",
)
def integrated_gradients(explainer: Explainer) -> np.ndarray:
    from captum.attr import IntegratedGradients

    with torch.enable_grad():
        attribution = IntegratedGradients(explainer.score).attribute(
            explainer.x,
            baselines=explainer.baseline,
            n_steps=IG_STEPS,
            internal_batch_size=explainer.batch_size,
        )
    explainer.module.zero_grad(set_to_none=True)
    return attribution[0].sum(0).detach().float().numpy()
