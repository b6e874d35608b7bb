"""A 3D classifier that reads a volume slice by slice: a shared 2D backbone encodes every slice, gated attention
pools the slice embeddings (attention-based multiple-instance learning, Ilse et al. 2018, arXiv:1802.04712).

The slices are taken along one spatial axis of the network input (``slice_axis``, a model kwarg). Default rule: the
axis with the fewest voxels in ``input_size`` (the through-plane axis of an anisotropic volume, which has fewer
slices than in-plane pixels); on a tie the last axis (S in medlens' RAS volumes: axial slices).

The network exposes its attention: :meth:`SliceAttentionClassifier.slice_attention` gives one weight per slice
(summing to 1) for a batch, and ``slice_axis`` says along which axis. Prediction reads these through
:func:`ensemble_slice_attention`, never by the model's name.

MONAI's ``MILModel`` (``mil_mode="att"``) was considered: its attention is the ungated variant with a fixed
2048-unit hidden layer, and ``calc_head`` keeps the weights inside (it returns only logits), so the weights per
slice could not be exposed without re-running its attention; it also hides the per-slice feature maps the CAM
explanations read. The gated attention below is the paper's equation 9 in a few lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medlens.models.registry import register_model


def default_slice_axis(input_size: Sequence[int]) -> int:
    """The spatial axis with the fewest voxels; on a tie the last of them.

    Example:
        >>> default_slice_axis([64, 64, 20]), default_slice_axis([28, 28, 28]), default_slice_axis([12, 64, 64])
        (2, 2, 0)
    """
    fewest = min(input_size)
    return max(i for i, s in enumerate(input_size) if s == fewest)


class GatedAttention(nn.Module):
    """Gated attention pooling weights (Ilse et al. 2018, eq. 9): ``a_s = softmax_s(w^T (tanh(V h_s) * sigm(U h_s)))``.

    Args:
        dim: embedding size of one instance (slice).
        hidden: size of the attention's hidden layer.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.value = nn.Linear(dim, hidden)  # V
        self.gate = nn.Linear(dim, hidden)  # U
        self.score = nn.Linear(hidden, 1)  # w

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Weights ``(B, S)`` summing to 1 over slices for embeddings ``(B, S, D)``."""
        scores = self.score(torch.tanh(self.value(h)) * torch.sigmoid(self.gate(h)))  # (B, S, 1)
        return torch.softmax(scores.squeeze(-1), dim=1)


class SliceEncoder(nn.Module):
    """A 2D backbone run on every slice along ``axis``; its feature maps put back in the volume's layout.

    The output ``(B, F, *spatial')`` keeps the slice axis at its place (full length) and the in-plane axes at the
    backbone's resolution, so the CAM family reads it as a 3D feature map.
    """

    def __init__(self, backbone: nn.Module, axis: int) -> None:
        super().__init__()
        from monai.networks.nets.resnet import ResNet

        self.backbone = backbone
        self.axis = axis
        if isinstance(backbone, ResNet):
            self.features = int(backbone.fc.in_features)  # type: ignore[union-attr]
            backbone.fc = None  # type: ignore[assignment]  # the head is this model's own
            self._monai = True
        elif hasattr(backbone, "forward_features") and hasattr(backbone, "reset_classifier"):  # timm
            timm_net: Any = backbone
            timm_net.reset_classifier(0)
            self.features = int(timm_net.num_features)
            self._monai = False
        else:
            raise ValueError(f"{type(backbone).__name__} gives no feature maps (use a MONAI ResNet or a timm model)")

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        net: Any = self.backbone
        if not self._monai:
            return net.forward_features(x)  # type: ignore[no-any-return]
        # MONAI's ResNet.forward pools and flattens inside; its stages up to the last feature map, as it runs them
        x = net.act(net.bn1(net.conv1(x)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        slices = x.movedim(2 + self.axis, 1)  # (B, S, C, h, w): in-plane axes in their order
        s = slices.shape[1]
        maps = self._maps(slices.flatten(0, 1))  # (B*S, F, h', w')
        maps = maps.reshape(b, s, *maps.shape[1:])  # (B, S, F, h', w')
        return maps.movedim(1, 2).movedim(2, 2 + self.axis)  # (B, F, *spatial'), slice axis in place


class SliceAttentionClassifier(nn.Module):
    """Slices encoded by a shared 2D backbone, pooled by gated attention, classified by a linear head.

    Args:
        backbone: a 2D MONAI ResNet or timm model (its head is dropped).
        slice_axis: the spatial axis (0, 1 or 2) the slices are taken along.
        num_classes: outputs.
        embed_dim: size of a slice's embedding (a linear map of its pooled features, then ReLU).
        attention_dim: hidden size of the gated attention.
        dropout: dropout on the pooled embedding before the head.
    """

    def __init__(
        self,
        backbone: nn.Module,
        slice_axis: int,
        num_classes: int,
        embed_dim: int = 128,
        attention_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.slice_axis = slice_axis
        self.encoder = SliceEncoder(backbone, slice_axis)
        self.embed = nn.Sequential(nn.Linear(self.encoder.features, embed_dim), nn.ReLU())
        self.attention = GatedAttention(embed_dim, attention_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)

    def embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """One embedding per slice: ``(B, S, D)`` for volumes ``(B, C, *spatial)``."""
        maps = self.encoder(x).movedim(2 + self.slice_axis, 1)  # (B, S, F, h', w')
        return self.embed(maps.mean(dim=(-2, -1)))  # (B, S, D)

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K)`` and attention ``(B, S)`` (one weight per slice, summing to 1)."""
        h = self.embeddings(x)  # (B, S, D)
        weights = self.attention(h)  # (B, S)
        pooled = (weights.unsqueeze(-1) * h).sum(dim=1)  # (B, D)
        return self.head(self.dropout(pooled)), weights

    def slice_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weight of every slice along ``slice_axis``: ``(B, S)``, each row summing to 1."""
        return self.forward_with_attention(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x)[0]


@register_model(
    "slice_attention",
    output="image",
    spatial_dims=(3,),
    source="medlens+monai",
    description="3D: a shared 2D backbone per slice (default MONAI ResNet-10) pooled by gated attention "
    "(MIL, Ilse et al. 2018); kwargs slice_axis (default: fewest voxels, last on a tie), backbone, embed_dim",
)
def _slice_attention(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    slice_axis: int | None = None,
    backbone: str = "monai_resnet10",
    embed_dim: int = 128,
    attention_dim: int = 64,
    dropout: float = 0.0,
    **backbone_kwargs: Any,
) -> nn.Module:
    """Build the slice-attention classifier; kwargs it does not name (``widen_factor``, ``stem_stride``,
    ``stem_pool`` of a plan's MONAI ResNet) go to the 2D backbone."""
    from medlens.models.registry import create_model

    if len(input_size) != 3:
        raise ValueError(f"slice attention reads volumes, got input size {input_size}")
    axis = default_slice_axis(input_size) if slice_axis is None else int(slice_axis)
    if axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    plane = [s for i, s in enumerate(input_size) if i != axis]
    net = create_model(
        backbone, output="image", spatial_dims=2, in_channels=in_channels, num_classes=1, input_size=plane,
        **backbone_kwargs,
    )  # fmt: skip
    return SliceAttentionClassifier(net, axis, num_classes, embed_dim, attention_dim, dropout)


@torch.inference_mode()
def ensemble_slice_attention(networks: Sequence[nn.Module], x: torch.Tensor) -> tuple[int, np.ndarray] | None:
    """The members' mean attention per slice for normalised inputs ``x`` ``(N, C, *spatial)``: ``(axis, (N, S))``,
    or None when no member exposes ``slice_attention`` (or the members slice along different axes)."""
    found = [net for net in networks if callable(getattr(net, "slice_attention", None))]
    axes = {int(getattr(net, "slice_axis", -1)) for net in found}
    if not found or len(axes) != 1:
        return None
    weights = torch.stack([net.slice_attention(x).float() for net in found]).mean(0)  # type: ignore[operator]
    return axes.pop(), weights.numpy()
