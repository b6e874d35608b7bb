"""Classification networks: timm 2D backbones (ResNets, ConvNeXt, ViT) and MONAI 2D/3D networks (ResNets,
DenseNet, ViT), with small-image stems and patch sizes fitted to small inputs."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from medlens.models.registry import register_model

SMALL_INPUT = 64  # inputs at most this big (per axis) get a stride-1 stem and no max-pool


def _small(input_size: list[int]) -> bool:
    return min(input_size) <= SMALL_INPUT


def _timm(
    name: str, in_channels: int, num_classes: int, input_size: list[int], dropout: float = 0.0, **kw: Any
) -> nn.Module:
    import timm

    model = timm.create_model(
        name, pretrained=False, in_chans=in_channels, num_classes=num_classes, drop_rate=dropout, **kw
    )
    if _small(input_size):
        _small_stem(model)
    return model


def _small_stem(model: nn.Module) -> None:
    """Keep resolution for 28-64 px inputs: stride-1 3x3 first convolution and no max-pool (as the MedMNIST
    ResNets and CIFAR ResNets do). timm has no switch for this, so the stem modules are replaced."""
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d):  # ResNet family
        model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return
    stem = getattr(model, "conv_stem", None)
    if isinstance(stem, nn.Conv2d):  # EfficientNet / MobileNet family
        stem.stride = (1, 1)
        return
    stem_seq = getattr(model, "stem", None)
    if isinstance(stem_seq, nn.Sequential) and isinstance(stem_seq[0], nn.Conv2d):  # ConvNeXt: 4x4 patchify
        c = stem_seq[0]
        stem_seq[0] = nn.Conv2d(c.in_channels, c.out_channels, 3, stride=1, padding=1)
        return
    features = getattr(model, "features", None)
    if features is not None and hasattr(features, "conv0"):  # DenseNet
        c = features.conv0
        features.conv0 = nn.Conv2d(c.in_channels, c.out_channels, 3, stride=1, padding=1, bias=False)
        features.pool0 = nn.Identity()


def _register_timm(name: str, description: str) -> None:
    @register_model(name, output="image", spatial_dims=(2,), source="timm", description=description)
    def build(spatial_dims: int, in_channels: int, num_classes: int, input_size: list[int], **kw: Any) -> nn.Module:
        return _timm(name, in_channels, num_classes, input_size, **kw)


for _name, _desc in [
    ("resnet18", "ResNet-18 (timm); small-image stem for inputs up to 64 px"),
    ("resnet34", "ResNet-34 (timm)"),
    ("resnet50", "ResNet-50 (timm)"),
    ("efficientnet_b0", "EfficientNet-B0 (timm)"),
    ("densenet121", "DenseNet-121 (timm)"),
    ("convnext_atto", "ConvNeXt-Atto (timm, 3.4M parameters); small-image stem (stride-1 3x3) up to 64 px"),
    ("convnext_nano", "ConvNeXt-Nano (timm, 15M parameters); small-image stem (stride-1 3x3) up to 64 px"),
    ("mobilenetv3_large_100", "MobileNetV3-Large (timm)"),
]:
    _register_timm(_name, _desc)


def _monai_resnet(depth: int) -> None:
    layers = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]

    @register_model(
        f"monai_resnet{depth}",
        output="image",
        spatial_dims=(3, 2),
        source="monai",
        description=f"ResNet-{depth} (MONAI), 2D or 3D, width set by widen_factor; small-image stem up to 64 px",
    )
    def build(
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        input_size: list[int],
        widen_factor: float = 1.0,
        stem_stride: int | None = None,
        stem_pool: bool | None = None,
        dropout: float = 0.0,
        **kw: Any,
    ) -> nn.Module:
        from monai.networks.nets.resnet import ResNet, ResNetBlock

        small = _small(input_size)
        if stem_stride is None:
            stem_stride = 1 if small else 2
        if stem_pool is None:
            stem_pool = not small
        net = ResNet(
            block=ResNetBlock,
            layers=layers,
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3 if small else 7,
            conv1_t_stride=stem_stride,
            no_max_pool=not stem_pool,
            widen_factor=widen_factor,
            num_classes=num_classes,
            **kw,
        )
        if dropout and net.fc is not None:
            net.fc = nn.Sequential(nn.Dropout(dropout), net.fc)  # type: ignore[assignment]
        return net


for _depth in (10, 18, 34):
    _monai_resnet(_depth)


@register_model(
    "monai_densenet121",
    output="image",
    spatial_dims=(3, 2),
    source="monai",
    description="DenseNet-121 (MONAI), 2D or 3D",
)
def _densenet121(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    dropout: float = 0.0,
    **kw: Any,
) -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        dropout_prob=dropout,
        **kw,
    )


def patch_size_for(input_size: list[int]) -> int:
    """A transformer's patch side: about 8 patches along the shortest axis, a power of two from 2 to 16 (16 is the
    ImageNet ViTs' choice at 224 px; 28 px gives 4 px patches and a 7x7 grid, 64 px gives 8 px patches)."""
    side = min(input_size) / 8
    return int(min(16, max(2, 2 ** round(math.log2(max(side, 1.0))))))


# embed width, blocks, heads of the ViT sizes of Dosovitskiy et al. / DeiT (timm's vit_tiny_*, vit_small_*)
VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6)}


def _register_timm_vit(size: str) -> None:
    width, blocks, heads = VIT_SIZES[size]

    @register_model(
        f"vit_{size}",
        output="image",
        spatial_dims=(2,),
        source="timm",
        description=f"ViT-{size.capitalize()} (timm vit_{size}_patch16_224 layout: {width} wide, {blocks} blocks, "
        f"{heads} heads) built at the input size, patch side about 1/8 of the image (4 px at 28 px); depth= sets "
        "the blocks",
    )
    def build(
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        input_size: list[int],
        depth: int = blocks,
        patch_size: int | None = None,
        dropout: float = 0.0,
        **kw: Any,
    ) -> nn.Module:
        import timm

        patch = patch_size or patch_size_for(input_size)
        return timm.create_model(
            f"vit_{size}_patch16_224",
            pretrained=False,
            in_chans=in_channels,
            num_classes=num_classes,
            img_size=tuple(input_size),
            patch_size=patch,
            depth=depth,
            drop_rate=dropout,
            dynamic_img_pad=any(s % patch for s in input_size),
            **kw,
        )


for _size in VIT_SIZES:
    _register_timm_vit(_size)


@functools.cache
def _vit_logits() -> type[nn.Module]:
    """MONAI's ViT answering logits alone (MONAI's returns them with every block's hidden states); made on first
    use so that MONAI is imported only when the network is built."""
    from monai.networks.nets import ViT

    class ViTLogits(ViT):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[0]  # type: ignore[no-any-return]

    return ViTLogits


@register_model(
    "monai_vit",
    output="image",
    spatial_dims=(3, 2),
    source="monai",
    description="ViT (MONAI) with a class-token head, 2D or 3D; ViT-Tiny width (192, 3 heads), 6 blocks by default "
    "(num_layers=), patch side about 1/8 of the input",
)
def _monai_vit(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    hidden_size: int = 192,
    num_layers: int = 6,
    num_heads: int = 3,
    mlp_ratio: int = 4,
    patch_size: int | None = None,
    dropout: float = 0.0,
    **kw: Any,
) -> nn.Module:
    return _vit_logits()(
        classification=True,
        post_activation=None,
        in_channels=in_channels,
        img_size=input_size,
        patch_size=patch_size or patch_size_for(input_size),
        hidden_size=hidden_size,
        mlp_dim=hidden_size * mlp_ratio,
        num_layers=num_layers,
        num_heads=num_heads,
        num_classes=num_classes,
        dropout_rate=dropout,
        spatial_dims=spatial_dims,
        qkv_bias=True,
        **kw,
    )
