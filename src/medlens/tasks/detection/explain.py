"""Why this box: the explainer of a detection for one box the model found.

The target is a box of the prediction (default: the best-scoring box at the operating score; ``target`` names a
class to take that class's best box). Its score in a perturbed picture is the score of the box the members find
there that matches it (same class, IoU at least 0.5; 0 when none does), after the same merge of members and NMS
as prediction. Two methods explain detectors: EigenCAM, gradient-free, on the backbone's feature pyramid (every
level cropped to the picture, without the batch padding, resized to the finest level and stacked), and captum's
occlusion of that box score. The gradient methods are not offered: a box's score reaches the pixels only through
the detector's box selection, whose gradient says little.

Maps are on the picture's own pixels (detectors take pictures as they are), so they need no way back but the
one-slice volume a single DICOM slice is read as.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medlens.core.errors import ConfigError, InputError
from medlens.core.image import Image
from medlens.explanations.explainer import Explainer

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

MATCH_IOU = 0.5


class Detectors(nn.Module):
    """The members run one after the other on a batch of pictures (what EigenCAM's hooks read)."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> list[Any]:
        return [net(list(x)) for net in self.members]


def pyramid_to_map(valid: tuple[float, float]) -> Any:
    """A reshape transform for pytorch-grad-cam: the FPN levels ``{name: (B, C, h, w)}`` cropped to the fraction
    ``valid`` (height, width) that is picture rather than batch padding, resized to the finest level and stacked
    on channels: ``(B, C * levels, h0, w0)``."""

    def transform(features: Any) -> torch.Tensor:
        levels = list(features.values()) if isinstance(features, dict) else [features]
        cropped = [
            f[..., : max(1, math.ceil(f.shape[-2] * valid[0])), : max(1, math.ceil(f.shape[-1] * valid[1]))]
            for f in levels
        ]
        size = tuple(cropped[0].shape[-2:])
        return torch.cat([F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in cropped], 1)

    return transform


def _pick_box(prediction: Any, names: list[str], target: str | None, source: str) -> tuple[np.ndarray, int, float]:
    kept = prediction.kept
    scores = kept.scores if kept.scores is not None else np.ones(len(kept.labels))
    chosen = np.arange(len(kept.labels))
    if target is not None:
        if target not in names:
            raise ConfigError("--target", f"{target!r} is not a class of this model ({', '.join(names)})")
        chosen = chosen[kept.labels == names.index(target)]
    if not len(chosen):
        what = f"no {target} box" if target else "no box"
        raise InputError(source, f"{what} found at the operating score: nothing to explain")
    best = int(chosen[np.argmax(scores[chosen])])
    return kept.boxes[best].astype(np.float64), int(kept.labels[best]), float(scores[best])


def explainer(bundle: Bundle, image: Image, target: str | None = None) -> Explainer:
    """The explainer of ``image`` for its best box (of class ``target`` when given)."""
    from torchvision.ops import box_iou

    from medlens.tasks.detection.module import detect_raw, merge
    from medlens.tasks.detection.prediction import detect, image_tensor

    plan = bundle.plan
    d = plan.detection  # type: ignore[attr-defined]
    source = str(image.meta.get("source", "<memory>"))
    picture = image.as_2d()
    if picture.spatial_dims != 2:
        raise InputError(source, f"a {picture.spatial_dims}D image; this detector takes 2D images")
    x = image_tensor(picture.array, plan.data.channels, source).float()[None]  # (1, C, H, W) raw units
    names = list(bundle.class_names)
    box, label, box_score = _pick_box(detect(bundle, [image])[0], names, target, source)
    target_box = torch.as_tensor(box, dtype=torch.float32)[None]  # (1, 4)
    nets = bundle.networks()
    with torch.no_grad():
        batched, _ = nets[0].transform([x[0]])  # type: ignore[operator]  # the detector's own resize and padding
    (height, width), padded = batched.image_sizes[0], batched.tensors.shape[-2:]
    valid = (height / padded[0], width / padded[1])

    def to_image(values: np.ndarray) -> Image:
        array = np.ascontiguousarray(values, dtype=np.float32)[None]  # (1, H, W)
        if picture is not image:  # a one-slice volume: (1, rows, columns) -> (1, columns, rows, 1)
            array = array.swapaxes(1, 2)[..., None]
        return Image(np.ascontiguousarray(array), image.affine.copy(), "scalar")

    def build(networks: Sequence[nn.Module]) -> Explainer:
        members = list(networks)

        def score(batch: torch.Tensor) -> torch.Tensor:
            raw = [detect_raw(net, list(batch)) for net in members]  # (members, images)
            out = []
            for i in range(len(batch)):
                found = merge([r[i] for r in raw], d.nms_iou, d.detections_per_image)
                same = found["labels"] == label + 1  # network labels count from 1
                if not bool(same.any()):
                    out.append(0.0)
                    continue
                overlap = box_iou(target_box, found["boxes"][same].float())[0]
                matched = found["scores"][same][overlap >= MATCH_IOU]
                out.append(float(matched.max()) if len(matched) else 0.0)
            return torch.tensor(out)

        return Explainer(
            image=image,
            x=x,
            module=Detectors(members).eval(),
            layers=[net.get_submodule("backbone") for net in members],
            cam_target=lambda output: torch.zeros(()),  # EigenCAM reads no target
            score=score,
            target=f"{names[label]} box {[round(float(v), 1) for v in box]} (score {box_score:.3f})",
            to_image=to_image,
            baseline=float(plan.data.mean),
            rebuild=build,
            reshape_transform=pyramid_to_map(valid),
            batch_size=4,
            occlusion_stride=None,
        )

    return build(nets)
