"""The explainer of the tasks that take a whole image and give one answer for it (classification, regression).

The network input is the image as prediction prepares it (:func:`medlens.training.images.to_input`: reoriented,
resized or padded, then normalised); the members are one :class:`~medlens.explanations.explainer.Ensemble`; the CAM
family reads each member's last feature-map layer (:func:`~medlens.explanations.explainer.feature_layer`); a removed
pixel takes the dataset's mean intensity; maps go back through the inverse resize and reorientation
(:func:`medlens.training.images.from_input_grid`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medlens.core.image import Image
from medlens.explanations.explainer import Ensemble, Explainer, feature_layer

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

#: (members, normalised batch) -> (B,) the score deletion and insertion follow
ScoreFn = Callable[[Sequence[nn.Module], torch.Tensor], torch.Tensor]


def whole_image_explainer(bundle: Bundle, image: Image, *, target: str, output_index: int, score: ScoreFn) -> Explainer:
    """An explainer of ``image`` for output ``output_index`` of the members (a class's logit, the value).

    Args:
        bundle: the model.
        image: the input in its own geometry.
        target: what is explained, in words.
        output_index: the network output the gradient CAMs differentiate (their mean over members).
        score: the score deletion and insertion follow, occlusion and integrated gradients attribute.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from medlens.training.images import from_input_grid, normalize, to_input

    data = bundle.plan.data
    x = normalize(torch.from_numpy(to_input(image, data))[None], data)  # (1, C, *input_size)
    baseline = float(normalize(torch.tensor([data.mean], dtype=torch.float32), data)[0])  # the mean intensity

    def to_image(values: np.ndarray) -> Image:
        return from_input_grid(values, image, data)

    def build(networks: Sequence[nn.Module]) -> Explainer:
        nets = list(networks)
        return Explainer(
            image=image,
            x=x,
            module=Ensemble(nets).eval(),
            layers=[feature_layer(net, x) for net in nets],
            cam_target=ClassifierOutputTarget(output_index),
            score=lambda batch: score(nets, batch),
            target=target,
            to_image=to_image,
            baseline=baseline,
            rebuild=build,
            batch_size=64,
        )

    return build(bundle.networks())
