"""2D detectors from torchvision (RetinaNet, FCOS, Faster R-CNN) on a ResNet FPN, trained from scratch.

Labels inside these networks are 1..K with 0 as background (Faster R-CNN needs the background class; the
sigmoid heads of RetinaNet and FCOS simply never see it), so ``num_classes`` here is the number of object
classes and the networks are built with one more. :mod:`medlens.tasks.detection` shifts labels in and out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from medlens.core.errors import ConfigError, InputError
from medlens.models.registry import register_model

log = logging.getLogger(__name__)
BACKBONES = ("resnet18", "resnet34", "resnet50")
DEFAULT_ANCHORS = [[32.0 * 2**level * 2 ** (k / 3) for k in range(3)] for level in range(5)]


def _backbone(name: str, in_channels: int, levels: str, channels: int = 256) -> nn.Module:
    """A ResNet FPN with ``channels`` per level and trainable batch norm (frozen statistics suit pretrained
    backbones only). Built from torchvision's parts because ``resnet_fpn_backbone`` fixes 256 channels."""
    from torchvision.models import resnet
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    if name not in BACKBONES:
        raise ConfigError(
            "model.kwargs.backbone", f"unknown detection backbone {name!r} (choose {', '.join(BACKBONES)})"
        )
    body = resnet.__dict__[name](weights=None, norm_layer=nn.BatchNorm2d)
    if in_channels != 3:
        body.conv1 = nn.Conv2d(in_channels, body.conv1.out_channels, 7, stride=2, padding=3, bias=False)
    returned = [2, 3, 4] if levels == "p3p7" else [1, 2, 3, 4]
    width = body.inplanes // 8  # stage 1 channels (64 for ResNet-18/34, 256 for ResNet-50)
    extra = LastLevelP6P7(channels, channels) if levels == "p3p7" else LastLevelMaxPool()
    return BackboneWithFPN(
        body,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(returned)},
        in_channels_list=[width * 2 ** (k - 1) for k in returned],
        out_channels=channels,
        extra_blocks=extra,
        norm_layer=None,
    )


def _transform_kwargs(input_size: list[int], kw: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """torchvision's internal resize and normalisation: short side from ``short_sides`` (random per batch in
    training, the last one at inference), long side at most the input's long side at that scale."""
    short, long = min(input_size), max(input_size)
    sides = [int(s) for s in kw.pop("short_sides", None) or [short]]
    mean, std = kw.pop("image_mean", 0.0), kw.pop("image_std", 1.0)
    return {
        "min_size": tuple(sides),
        "max_size": math.ceil(max(sides) * long / short),
        "image_mean": [float(mean)] * in_channels,
        "image_std": [float(std)] * in_channels,
    }


def _anchors(sizes: Sequence[Sequence[float]] | None, ratios: Sequence[float] | None, levels: int) -> Any:
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = [list(s) for s in (sizes or DEFAULT_ANCHORS)]
    if len(sizes) != levels:
        raise ConfigError("detection.anchor_sizes", f"needs {levels} lists (one per feature level), got {len(sizes)}")
    ratios = list(ratios or [0.5, 1.0, 2.0])
    return AnchorGenerator(tuple(tuple(s) for s in sizes), tuple(tuple(ratios) for _ in sizes))


@register_model("retinanet", output="boxes", spatial_dims=(2,), source="torchvision")
def retinanet(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    backbone: str = "resnet18",
    anchor_sizes: list[list[float]] | None = None,
    aspect_ratios: list[float] | None = None,
    fpn_channels: int = 256,
    **kw: Any,
) -> nn.Module:
    """RetinaNet (focal loss, anchors per FPN level P3-P7, GroupNorm head as torchvision's v2)."""
    from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

    anchors = _anchors(anchor_sizes, aspect_ratios, 5)
    head = RetinaNetHead(
        fpn_channels, anchors.num_anchors_per_location()[0], num_classes + 1, norm_layer=partial(nn.GroupNorm, 32)
    )
    return RetinaNet(
        _backbone(backbone, in_channels, "p3p7", fpn_channels),
        num_classes + 1,
        anchor_generator=anchors,
        head=head,
        **_transform_kwargs(input_size, kw, in_channels),
        **kw,
    )


@register_model("fcos", output="boxes", spatial_dims=(2,), source="torchvision")
def fcos(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    backbone: str = "resnet18",
    anchor_sizes: list[list[float]] | None = None,
    aspect_ratios: list[float] | None = None,
    fpn_channels: int = 256,
    **kw: Any,
) -> nn.Module:
    """FCOS: anchor-free (one point per location, centre-ness), FPN levels P3-P7."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOS

    points = AnchorGenerator(tuple((8.0 * 2**level,) for level in range(5)), ((1.0,),) * 5)  # one point per cell
    return FCOS(
        _backbone(backbone, in_channels, "p3p7", fpn_channels),
        num_classes + 1,
        anchor_generator=points,
        **_transform_kwargs(input_size, kw, in_channels),
        **kw,
    )


@register_model("fasterrcnn", output="boxes", spatial_dims=(2,), source="torchvision")
def fasterrcnn(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    backbone: str = "resnet18",
    anchor_sizes: list[list[float]] | None = None,
    aspect_ratios: list[float] | None = None,
    fpn_channels: int = 256,
    **kw: Any,
) -> nn.Module:
    """Faster R-CNN (two stages: region proposals, then RoI heads), FPN levels P2-P6, one anchor size each."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN

    first = (anchor_sizes or DEFAULT_ANCHORS)[0][0] / 2  # P2 has half the stride of P3
    sizes = [[first * 2**level] for level in range(5)]
    renamed = {
        "score_thresh": "box_score_thresh",
        "nms_thresh": "box_nms_thresh",
        "detections_per_img": "box_detections_per_img",
    }
    extra = {renamed.get(k, k): v for k, v in kw.items() if k not in ("short_sides", "image_mean", "image_std")}
    return FasterRCNN(
        _backbone(backbone, in_channels, "p2p6", fpn_channels),
        num_classes + 1,
        rpn_anchor_generator=_anchors(sizes, aspect_ratios, 5),
        **_transform_kwargs(input_size, kw, in_channels),
        **extra,
    )


def set_postprocess(model: nn.Module, *, score: float, nms: float, detections: int) -> None:
    """Set a built detector's score threshold, NMS IoU and detections per image (Faster R-CNN: its RoI heads)."""
    heads: Any = getattr(model, "roi_heads", model)
    heads.score_thresh, heads.nms_thresh, heads.detections_per_img = score, nms, detections


def postprocess_of(model: nn.Module) -> tuple[float, float, int]:
    """A built detector's (score threshold, NMS IoU, detections per image)."""
    heads: Any = getattr(model, "roi_heads", model)
    return float(heads.score_thresh), float(heads.nms_thresh), int(heads.detections_per_img)


def load_detector_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into a detector: a whole torchvision detector, its backbone, or a plain ResNet.

    Each checkpoint key is tried as it is, under ``backbone.``, and under ``backbone.body.`` (a classification
    ResNet); tensors of another shape (a head for other classes) keep their initial values, and an input
    convolution with other channels is adapted. The generic :func:`medlens.models.checkpoints.load_pretrained`
    cannot do this, since detector keys nest the backbone.
    """
    from medlens.models.checkpoints import adapt_input_channels, read_state_dict

    state = read_state_dict(path)  # strips "backbone." and similar prefixes
    own = model.state_dict()
    loaded, skipped = {}, 0
    for key, value in state.items():
        for candidate in (key, f"backbone.{key}", f"backbone.body.{key}"):
            if candidate not in own:
                continue
            target = own[candidate]
            if value.shape == target.shape:
                loaded[candidate] = value
            elif candidate.endswith("body.conv1.weight") and value.shape[2:] == target.shape[2:]:
                loaded[candidate] = adapt_input_channels(value, target.shape[1])
            else:
                skipped += 1
            break
    if not loaded:
        raise InputError(Path(path), "no weight in the checkpoint matches this detector (is it a ResNet or detector?)")
    model.load_state_dict(loaded, strict=False)
    log.info(
        "pretrained %s: %d of %d detector tensors loaded (%d shape-mismatched kept)",
        path,
        len(loaded),
        len(own),
        skipped,
    )
