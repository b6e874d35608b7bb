"""Why a regressor gave its value: the explainer of one image (every method of the registry).

The target is the value itself: the CAM family differentiates the members' mean standardised output, and deletion,
insertion, occlusion and integrated gradients follow that mean (in standard deviations of the training targets, so
curves of different targets compare). A map shows what raises the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.core.image import Image
from medlens.explanations.explainer import Explainer

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


def explainer(bundle: Bundle, image: Image, target: str | None = None) -> Explainer:
    """The explainer of ``image`` for the predicted value (``target``, when given, must be the target's name)."""
    from medlens.explanations.whole_image import whole_image_explainer

    name = bundle.plan.regression.target  # type: ignore[attr-defined]
    if target is not None and target != name:
        raise ConfigError("--target", f"{target!r}: this model predicts one value, {name!r}")

    def score(nets: Sequence[nn.Module], batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(batch)[:, 0].float() for net in nets]).mean(0)

    return whole_image_explainer(bundle, image, target=name, output_index=0, score=score)
