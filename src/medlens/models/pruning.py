"""Structured (channel) pruning with torch-pruning, and rebuilding a pruned network from its weights alone.

``prune_network`` traces the network's dependency graph (torch-pruning's ``DependencyGraph``: channels coupled by
residual additions, concatenations and normalisation are removed together), ranks each group of coupled channels
by the L2 norm of its weights (``GroupMagnitudeImportance``) and removes ``ratio`` of each layer's channels, keeping
the output layer (its channels are the classes) whole.

A bundle stores weights as safetensors only, never pickles (torch-pruning's own ``tp.state_dict`` pickles module
attributes, which loading a received bundle must not run), so a pruned member is rebuilt by ``fit_shapes``: the
plan's network is built, and each convolution, linear and normalisation layer is given the shapes of the saved
tensors (hand-written: no library resizes layers to a state dict).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from medlens.core.errors import ConfigError


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def output_layers(net: nn.Module, num_classes: int) -> list[nn.Module]:
    """The layers whose outputs are the classes (the last linear or convolution with ``num_classes`` outputs, and
    segmentation's deep-supervision heads): never pruned."""
    heads: list[nn.Module] = []
    for module in net.modules():
        if (isinstance(module, nn.Linear) and module.out_features == num_classes) or (
            isinstance(module, nn.modules.conv._ConvNd) and module.out_channels == num_classes
        ):
            heads.append(module)
    return heads


def prune_network(net: nn.Module, input_shape: list[int], ratio: float, num_classes: int) -> nn.Module:
    """A pruned copy of ``net`` (``ratio`` of each prunable layer's channels removed by L2 magnitude).

    torch-pruning finds coupled channels by following autograd from one forward pass. Two things of ours hide
    layers from it, so the copy is traced with both undone: in-place activations (an in-place LeakyReLU before a
    concatenation leaves an ``AsStrided`` node whose channel count it cannot read) and branches that only run in
    training (DynUNet's deep-supervision heads: traced in eval mode their input channels would not follow the
    decoder's). The training-mode pass runs on a batch of two (batch norm needs more than one value per channel)
    and the normalisation statistics it would move are put back.

    Raises:
        ConfigError: when torch-pruning cannot trace the network.
    """
    import torch_pruning as tp

    pruned = copy.deepcopy(net)
    for module in pruned.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]
    example = torch.zeros(2, *input_shape)
    try:
        with _statistics_kept(pruned):
            pruner = tp.pruner.MetaPruner(
                pruned,
                example,
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=ratio,
                ignored_layers=output_layers(pruned, num_classes),
                forward_fn=_training_forward,
            )
        pruner.step()
        with _statistics_kept(pruned), torch.no_grad():  # both modes still run
            pruned.train()(example)
            pruned.eval()(example)
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:  # its graph tracing gave up
        raise ConfigError(
            "model.name", f"torch-pruning cannot prune this {type(net).__name__} network ({type(exc).__name__}: {exc})"
        ) from None
    return pruned.eval()


@contextlib.contextmanager
def _statistics_kept(net: nn.Module) -> Iterator[None]:
    """Put back the buffers (batch norm's running statistics) that training-mode passes inside would move."""
    kept = {name: tensor.clone() for name, tensor in net.named_buffers()}
    yield
    with torch.no_grad():
        for name, tensor in net.named_buffers():
            tensor.copy_(kept[name])


def _training_forward(net: nn.Module, example: torch.Tensor) -> Any:
    """torch-pruning's tracing pass, in training mode (it sets eval mode itself) so training-only branches count."""
    return net.train()(example)


def fit_shapes(net: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Give ``net``'s layers the shapes of ``state``'s tensors (a pruned network's weights), so that
    ``load_state_dict`` takes them; layers whose tensors keep their shape are left alone. Returns ``net``."""
    modules = dict(net.named_modules())
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        current = getattr(module, name, None) if module is not None else None
        if not isinstance(current, torch.Tensor) or current.shape == value.shape:
            continue
        empty = torch.empty(value.shape, dtype=current.dtype)
        if isinstance(current, nn.Parameter):
            setattr(module, name, nn.Parameter(empty, requires_grad=current.requires_grad))
        else:
            module.register_buffer(name, empty)  # type: ignore[union-attr]
    for module in net.modules():
        _fit_attributes(module)
    return net


def _fit_attributes(module: nn.Module) -> None:
    """The size attributes of a layer, from its (resized) weights."""
    weight: Any = getattr(module, "weight", None)
    if isinstance(module, nn.modules.conv._ConvNd) and isinstance(weight, torch.Tensor):
        transposed = module.transposed
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        out = weight.shape[out_dim] * (module.groups if transposed else 1)
        if depthwise:
            module.groups = weight.shape[0]
            module.in_channels = module.out_channels = weight.shape[0]
        else:
            module.out_channels = out
            module.in_channels = weight.shape[in_dim] * (1 if transposed else module.groups)
    elif isinstance(module, nn.Linear) and isinstance(weight, torch.Tensor):
        module.out_features, module.in_features = weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        tensor = weight if isinstance(weight, torch.Tensor) else module.running_mean
        if isinstance(tensor, torch.Tensor):
            module.num_features = tensor.shape[0]
    elif isinstance(module, nn.GroupNorm) and isinstance(weight, torch.Tensor):
        module.num_channels = weight.shape[0]
    elif isinstance(module, nn.LayerNorm) and isinstance(weight, torch.Tensor):
        module.normalized_shape = tuple(weight.shape)
