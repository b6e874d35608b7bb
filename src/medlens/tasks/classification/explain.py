"""Why a classifier gave its answer: the explainer of one image for one class (every method of the registry).

The target is a class (default: the predicted one; for multi-label the first predicted label, or the most probable
when none is); the CAM family differentiates the members' mean logit of that class, and deletion, insertion,
occlusion and integrated gradients follow the ensemble's probability of it (softmax, or the label's sigmoid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.core.image import Image
from medlens.explanations.explainer import Explainer
from medlens.tasks.classification.config import plan_of

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle


def target_class(bundle: Bundle, image: Image, target: str | None) -> str:
    """``target`` when it names a class; otherwise the model's answer for ``image``."""
    names = bundle.class_names
    if target is not None:
        if target not in names:
            raise ConfigError("--target", f"{target!r} is not a class of this model ({', '.join(names)})")
        return target
    prediction = bundle.task.predict(bundle, [image])[0]
    label = prediction.label  # type: ignore[attr-defined]
    if isinstance(label, list):
        probabilities = prediction.probabilities  # type: ignore[attr-defined]
        return label[0] if label else max(names, key=lambda n: probabilities[n])
    return str(label)


def explainer(bundle: Bundle, image: Image, target: str | None = None) -> Explainer:
    """The explainer of ``image`` for ``target`` (a class name; default: the predicted class)."""
    from medlens.explanations.whole_image import whole_image_explainer
    from medlens.tasks.classification.module import probabilities

    name = target_class(bundle, image, target)
    k = bundle.class_names.index(name)
    multilabel = plan_of(bundle).multilabel

    def score(nets: Sequence[nn.Module], batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([probabilities(net(batch).float(), multilabel)[:, k] for net in nets]).mean(0)

    return whole_image_explainer(bundle, image, target=name, output_index=k, score=score)
