"""Segmentation networks: MONAI's DynUNet, the configurable U-Net nnU-Net plans (kernels and strides per axis), and
the transformer-encoder U-Nets UNETR and SwinUNETR."""

from __future__ import annotations

from typing import Any

from torch import nn

from medlens.models.registry import register_model

MIN_FEATURE_SIZE = 4


def default_topology(input_size: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    """Kernels and strides pooling every axis while its feature map stays at least 4 voxels (max 5 poolings)."""
    size = list(input_size)
    strides = [[1] * len(size)]
    while len(strides) < 6:
        stride = [2 if s / 2 >= MIN_FEATURE_SIZE else 1 for s in size]
        if max(stride) == 1:
            break
        size = [s // st for s, st in zip(size, stride, strict=True)]
        strides.append(stride)
    return [[3] * len(size) for _ in strides], strides


@register_model("dynunet", output="pixel", spatial_dims=(2, 3), source="monai", description="MONAI DynUNet (nnU-Net)")
def dynunet(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    kernels: list[list[int]] | None = None,
    strides: list[list[int]] | None = None,
    filters: list[int] | None = None,
    deep_supervision: bool = False,
    deep_supervision_heads: int = 1,
    dropout: float = 0.0,
) -> nn.Module:
    """DynUNet with instance norm and leaky ReLU (nnU-Net's choices); topology from the plan, or pooled to 4 voxels.

    In training mode with deep supervision it returns ``(B, 1 + heads, K, *spatial)``; in eval mode ``(B, K, ...)``.
    """
    from monai.networks.nets import DynUNet

    if kernels is None or strides is None:
        kernels, strides = default_topology(input_size)
    filters = filters or [min(32 * 2**i, 320 if spatial_dims == 3 else 512) for i in range(len(strides))]
    net = DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        dropout=dropout or None,
        norm_name=("instance", {"affine": True}),
        act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        deep_supervision=deep_supervision,
        deep_supr_num=deep_supervision_heads,
        res_block=False,
    )
    _drop_aliases(net)
    return net


def _drop_aliases(net: nn.Module) -> None:
    """Save each of DynUNet's parameters once, and accept such state dicts back.

    DynUNet reaches every block twice (``input_block`` and ``skip_layers.downsample`` are one module), so its
    state dict names each tensor twice, which safetensors refuses to save. The hooks drop the second names on
    save and restore them from the first on load.
    """
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in net.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name

    def on_save(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        for alias in aliases:
            state.pop(prefix + alias, None)

    def on_load(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for alias, name in aliases.items():
            if prefix + alias not in state and prefix + name in state:
                state[prefix + alias] = state[prefix + name]

    net.register_state_dict_post_hook(on_save)
    net.register_load_state_dict_pre_hook(on_load)


@register_model(
    "unetr",
    output="pixel",
    spatial_dims=(3, 2),
    source="monai",
    description="MONAI UNETR: a ViT encoder (16-voxel patches; input sides divisible by 16) with a convolutional "
    "decoder; ViT-Tiny width (192, 3 heads) by default for CPU budgets (MONAI's 768 is 16x the cost), 12 blocks",
)
def unetr(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    hidden_size: int = 192,
    num_heads: int = 3,
    feature_size: int = 16,
    dropout: float = 0.0,
    **kw: Any,
) -> nn.Module:
    from monai.networks.nets import UNETR

    if any(s % 16 for s in input_size):
        raise ValueError(f"UNETR needs input sides divisible by 16, got {input_size}")
    return UNETR(
        in_channels=in_channels,
        out_channels=num_classes,
        img_size=input_size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=4 * hidden_size,
        num_heads=num_heads,
        dropout_rate=dropout,
        spatial_dims=spatial_dims,
        qkv_bias=True,
        **kw,
    )


@register_model(
    "swinunetr",
    output="pixel",
    spatial_dims=(3, 2),
    source="monai",
    description="MONAI SwinUNETR: a Swin transformer encoder (windows of 7, four stages) with a convolutional "
    "decoder; input sides divisible by 32, at least 64; feature_size=12 by default (MONAI's 24 is 4x the cost)",
)
def swinunetr(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
    feature_size: int = 12,
    dropout: float = 0.0,
    **kw: Any,
) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    if any(s % 32 or s < 64 for s in input_size):  # at 32 the deepest map is one voxel: instance norm refuses it
        raise ValueError(f"SwinUNETR needs input sides divisible by 32 and at least 64, got {input_size}")
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=num_classes,
        feature_size=feature_size,
        drop_rate=dropout,
        spatial_dims=spatial_dims,
        **kw,
    )
