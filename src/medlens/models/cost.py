"""What a network costs to train: floating-point operations per image, counted by PyTorch."""

from __future__ import annotations

from typing import Any

import torch


def training_gflops(
    name: str,
    kwargs: dict[str, Any],
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    input_size: list[int],
) -> float:
    """GFLOPs of one forward and backward pass for one image (``torch.utils.flop_counter``).

    Counted, not timed: the figure is the same on a busy machine and a quiet one, so plans stay reproducible.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from medlens.models import create_model

    net = create_model(
        name,
        output="image",
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
        **kwargs,
    ).train()
    x = torch.randn(2, in_channels, *input_size)  # batch of 2: batch norm needs more than one value per channel
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / 2 / 1e9


def forward_gflops(net: torch.nn.Module, input_shape: list[int] | tuple[int, ...]) -> float:
    """GFLOPs of one forward pass of ``net`` (in eval mode) for one input of ``input_shape`` (C, *spatial), counted
    by ``torch.utils.flop_counter`` (multiply-adds count as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
    return counter.get_total_flops() / 1e9
