"""The class activation map family, from pytorch-grad-cam: Grad-CAM, Grad-CAM++, Score-CAM and EigenCAM, in 2D and 3D.

Each member network's feature layer is read on its own and the members' maps (each scaled to [0, 1] by the library)
are averaged, so an ensemble's explanation weighs its members equally. Maps are upsampled to the network input's grid
by the library (bilinear in 2D, spline zoom in 3D) and clipped at zero (the ReLU of Grad-CAM).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medlens.explanations.explainer import Explainer
from medlens.explanations.methods import register_method


def _cam(cam_class: Any, explainer: Explainer, **kwargs: Any) -> np.ndarray:
    """The mean over member layers of ``cam_class``'s map for the explainer's target, on ``x``'s grid."""
    maps = []
    for layer in explainer.layers:
        cam = cam_class(
            model=explainer.module, target_layers=[layer], reshape_transform=explainer.reshape_transform, **kwargs
        )
        try:
            with torch.enable_grad():
                grey = cam(input_tensor=explainer.x, targets=[explainer.cam_target])  # (1, *spatial) in [0, 1]
        finally:
            cam.activations_and_grads.release()  # not the context manager: its __exit__ swallows IndexError
            explainer.module.zero_grad(set_to_none=True)
        maps.append(np.asarray(grey[0], dtype=np.float32))
    return np.mean(maps, axis=0)


@register_method("gradcam", family="cam", description="Grad-CAM (Selvaraju et al. 2017), pytorch-grad-cam")
def gradcam(explainer: Explainer) -> np.ndarray:
    from pytorch_grad_cam import GradCAM

    return _cam(GradCAM, explainer)


@register_method("gradcam++", family="cam", description="Grad-CAM++ (Chattopadhay et al. 2018), pytorch-grad-cam")
def gradcam_plus_plus(explainer: Explainer) -> np.ndarray:
    from pytorch_grad_cam import GradCAMPlusPlus

    return _cam(GradCAMPlusPlus, explainer)


@register_method(
    "eigencam", family="cam", description="EigenCAM (Muhammad and Yeasin 2020), gradient-free, pytorch-grad-cam"
)
def eigencam(explainer: Explainer) -> np.ndarray:
    return _cam(_eigen_cam_class(), explainer)


def _eigen_cam_class() -> Any:
    from pytorch_grad_cam import EigenCAM

    class LeanEigenCAM(EigenCAM):  # type: ignore[misc]
        """pytorch-grad-cam's EigenCAM with its projection computed by a thin SVD.

        The library's ``get_2d_projection`` asks numpy for the full SVD (``full_matrices=True``), whose left factor
        is positions x positions: 44 GiB for a 40 x 48 x 40 feature map. Only the first right-singular vector is
        used, which the thin SVD gives exactly; the rest is the library's (centring, projection, no sign fix).
        """

        def get_cam_image(self, input_tensor: Any, target_layer: Any, target: Any, activations: Any, grads: Any,
                          eigen_smooth: bool) -> np.ndarray:  # fmt: skip
            out = []
            for a in np.nan_to_num(np.asarray(activations, dtype=np.float32)):  # (K, *s) per image
                flat = a.reshape(a.shape[0], -1).T  # (positions, K)
                flat = flat - flat.mean(axis=0)
                _, _, vt = np.linalg.svd(flat, full_matrices=False)
                out.append((flat @ vt[0]).reshape(a.shape[1:]))
            return np.asarray(out, dtype=np.float32)

    return LeanEigenCAM


def _score_cam_class() -> Any:
    from pytorch_grad_cam.base_cam import BaseCAM

    class ScoreCAM(BaseCAM):  # type: ignore[misc]
        """Score-CAM with the channel weights of the paper, in 2D and 3D.

        Written here because pytorch-grad-cam's ScoreCAM upsamples bilinearly in 2D only, weighs channels by a
        softmax over raw target outputs (degenerate for a region's summed logits), and draws a tqdm bar. The weight
        of channel k is the explainer's score (a probability) of x masked by channel k's upsampled activation, scaled
        to [0, 1], as in the authors' reference code (github.com/haofanwang/Score-CAM). The paper's eq. 5 subtracts
        the score of the baseline image: a constant shift that, when no single mask raises the score above the
        baseline's (common for a small network on a small picture), leaves every weight negative and, after the
        ReLU, an empty map. The rest (weighted sum, ReLU, upsampling) is the library's.
        """

        def __init__(self, model: Any, target_layers: Any, reshape_transform: Any, scorer: Explainer) -> None:
            super().__init__(model, target_layers, reshape_transform=reshape_transform, uses_gradients=False)
            self.scorer = scorer

        def get_cam_weights(
            self, input_tensor: torch.Tensor, target_layer: Any, targets: Any, activations: Any, grads: Any
        ) -> np.ndarray:
            e = self.scorer
            a = torch.as_tensor(np.asarray(activations), dtype=torch.float32)  # (1, K, *s)
            mode = "bilinear" if a.ndim == 4 else "trilinear"
            up = F.interpolate(a, size=tuple(input_tensor.shape[2:]), mode=mode, align_corners=False)[0]  # (K, *S)
            flat = up.reshape(len(up), -1)  # (K, S)
            low, high = flat.min(1).values, flat.max(1).values
            shape = (-1,) + (1,) * (up.ndim - 1)
            masks = (up - low.view(shape)) / (high - low + 1e-8).view(shape)  # (K, *S) in [0, 1]
            x = input_tensor[0].detach()  # (C, *S)
            base = torch.full_like(x, e.baseline)
            weights = []
            for i in range(0, len(masks), e.batch_size):
                chunk = masks[i : i + e.batch_size, None]  # (b, 1, *S)
                weights.append(e.scores(base[None] + (x[None] - base[None]) * chunk))
            return np.concatenate(weights)[None].astype(np.float32)  # (1, K)

    return ScoreCAM


@register_method(
    "scorecam",
    family="cam",
    slow=True,
    description="Score-CAM (Wang et al. 2020): one forward pass per feature channel, gradient-free",
)
def scorecam(explainer: Explainer) -> np.ndarray:
    return _cam(_score_cam_class(), explainer, scorer=explainer)
