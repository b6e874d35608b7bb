"""Masked-autoencoder pretraining (He et al. 2022) of a task's vision transformer: 2D timm ViTs and 2D/3D MONAI ViTs.

A random 75 % of the patches are hidden; the encoder sees the rest, a small decoder predicts the hidden patches'
pixels (normalised per patch, as in the paper) and the loss is their mean squared error. Two well-kept
implementations do the work, one per ViT family, so the encoder's tensors stay the task network's own:

- a timm ``VisionTransformer`` (``vit_tiny``, ``vit_small``): lightly's ``MaskedVisionTransformerTIMM`` wraps the
  network itself and ``MaskedVisionTransformerDecoderTIMM`` decodes;
- a MONAI ``ViT`` (``monai_vit``, and UNETR's encoder ``vit``): MONAI's ``MaskedAutoEncoderViT`` of the same
  width, depth, heads and patches is trained, and its encoder tensors are copied into the network's ViT at the end
  (``blocks.N``, its final LayerNorm, becomes the ViT's ``norm``).

Patchifying the target is written out (a reshape) because lightly's ``patchify`` takes square 2D images only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.training.plan import AugmentPlan

MASK_RATIO = 0.75
VIT_BACKBONES = "vit_tiny, vit_small, monai_vit or unetr"


def find_vit(net: nn.Module) -> tuple[str, nn.Module] | None:
    """The vision transformer in ``net``: (its attribute path, "" for the network itself; the module), or None."""
    from monai.networks.nets import ViT
    from timm.models.vision_transformer import VisionTransformer

    for path, module in net.named_modules():
        if isinstance(module, (VisionTransformer, ViT)) and "." not in path:
            return path, module
    return None


def mae_encoder(net: nn.Module, name: str) -> tuple[nn.Module, int]:
    """The part of ``net`` that MAE pretrains and ``encoder.safetensors`` holds: (module, embedding width).

    A classifier's ViT is the network itself (its head already removed by the caller); a segmentation network's
    ViT (UNETR's ``vit``) is held under its own attribute name, so the saved tensors keep the network's names.

    Raises:
        ConfigError: ``net`` holds no vision transformer (``--method mae`` on a ResNet, a U-Net, ...).
    """
    found = find_vit(net)
    if found is None:
        raise ConfigError(
            "--method", f"mae needs a ViT backbone ({VIT_BACKBONES}); {name} has none: choose --backbone or simclr"
        )
    path, vit = found
    if not path:
        holder = net
    else:
        holder = nn.Module()
        holder.add_module(path, vit)
    width = int(getattr(vit, "embed_dim", 0) or getattr(vit, "hidden_size", 0) or _monai_width(vit))
    return holder, width


def _monai_width(vit: nn.Module) -> int:
    return int(vit.get_submodule("patch_embedding.patch_embeddings").out_channels)  # type: ignore[arg-type]


def mae_view_plan(spatial_dims: int) -> AugmentPlan:
    """MAE's augmentation: a mild random resized crop and flips (the masking is the pretext task, not the views)."""
    return AugmentPlan(
        flip_axes=list(range(spatial_dims)),
        rotate_degrees=0.0,
        scale=[1.0, 1.25],
        translate=0.05,
        brightness=0.0,
        contrast=0.0,
        gamma=0.0,
        noise_std=0.0,
        spatial_probability=1.0,
        intensity_probability=0.0,
        why="masked autoencoder: mild random resized crop and flips; the pretext task is the masking",
    )


def patchify(x: torch.Tensor, patch: list[int]) -> torch.Tensor:
    """(B, C, *spatial) -> (B, patches, prod(patch) * C), patches in the row-major order of the patch grid (the order
    of both libraries' patch embeddings: a strided convolution, flattened)."""
    b, c, *spatial = x.shape
    grid = [s // p for s, p in zip(spatial, patch, strict=True)]
    shape = [b, c]
    for g, p in zip(grid, patch, strict=True):
        shape += [g, p]
    k = len(spatial)
    x = x.reshape(shape)
    order = [0, *(2 + 2 * i for i in range(k)), *(3 + 2 * i for i in range(k)), 1]  # B, grid..., patch..., C
    return x.permute(order).reshape(b, math.prod(grid), math.prod(patch) * c)


def _normalized(patches: torch.Tensor) -> torch.Tensor:
    """Each patch's pixels standardised by its own mean and variance (MAE's ``norm_pix_loss``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1e-6) ** 0.5


def _check_divisible(input_size: list[int], patch: list[int], name: str) -> None:
    if any(s % p for s, p in zip(input_size, patch, strict=True)):
        raise ConfigError("--backbone", f"mae needs input sides {input_size} divisible by the {name} patch {patch}")


class MAE(nn.Module):
    """The method object :func:`medlens.training.pretraining.pretrain_encoder` trains: one view per image."""

    views = 1
    encoder: nn.Module

    def view_plan(self, spatial_dims: int) -> AugmentPlan:
        return mae_view_plan(spatial_dims)

    def loss(self, a: torch.Tensor, b: torch.Tensor | None, fraction: float) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, fraction: float) -> None:
        """Nothing to update: MAE has no momentum network."""

    def finish(self) -> None:
        """Put the trained encoder tensors into ``encoder`` (already there when the encoder was trained in place)."""


class _TimmMAE(MAE):
    """MAE of a timm ViT through lightly's masked vision transformer and decoder (the network trains in place)."""

    def __init__(self, encoder: nn.Module, vit: nn.Module, input_size: list[int]) -> None:
        super().__init__()
        from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM

        self.encoder = encoder
        self.patch = [int(p) for p in vit.patch_embed.patch_size]  # type: ignore[union-attr]
        _check_divisible(input_size, self.patch, "ViT's")
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)  # type: ignore[arg-type]
        self.sequence_length = int(self.backbone.sequence_length)
        width, decoder_width = int(vit.embed_dim), 128  # type: ignore[arg-type]
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=int(vit.patch_embed.num_patches),  # type: ignore[union-attr, arg-type]
            embed_dim=decoder_width,
            depth=2,
            num_heads=4,
            num_prefix_tokens=int(vit.num_prefix_tokens),  # type: ignore[arg-type]
        )
        self.channels = int(vit.patch_embed.proj.in_channels)  # type: ignore[union-attr, arg-type]
        self.predict = nn.Linear(decoder_width, math.prod(self.patch) * self.channels)
        self.prefix = int(vit.num_prefix_tokens)  # type: ignore[arg-type]

    def loss(self, a: torch.Tensor, b: torch.Tensor | None, fraction: float) -> torch.Tensor:
        from lightly.models import utils

        batch = a.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(
            size=(batch, self.sequence_length), mask_ratio=MASK_RATIO, device=a.device
        )
        encoded = self.decoder_embed(self.backbone.encode(images=a, idx_keep=idx_keep))
        tokens = utils.repeat_token(self.decoder.mask_token, (batch, self.sequence_length))
        tokens = utils.set_at_index(tokens, idx_keep, encoded.type_as(tokens))
        predicted = self.predict(utils.get_at_index(self.decoder(tokens), idx_mask))
        target = utils.get_at_index(_normalized(patchify(a, self.patch)), idx_mask - self.prefix)
        return nn.functional.mse_loss(predicted, target)


class _MonaiMAE(MAE):
    """MAE of a MONAI ViT with MONAI's ``MaskedAutoEncoderViT`` of the same shape; copied into the ViT at the end."""

    def __init__(self, encoder: nn.Module, vit: nn.Module, path: str, input_size: list[int]) -> None:
        super().__init__()
        from monai.networks.nets import MaskedAutoEncoderViT

        self.encoder = encoder
        self.vit_path = path
        conv = vit.get_submodule("patch_embedding.patch_embeddings")
        self.patch = [int(k) for k in conv.kernel_size]  # type: ignore[union-attr]
        _check_divisible(input_size, self.patch, "ViT's")
        blocks = vit.get_submodule("blocks")
        first = blocks[0]  # type: ignore[index]
        width = int(conv.out_channels)  # type: ignore[arg-type]
        self.depth = len(blocks)  # type: ignore[arg-type]
        self.mae = MaskedAutoEncoderViT(
            in_channels=int(conv.in_channels),  # type: ignore[arg-type]
            img_size=input_size,
            patch_size=self.patch,
            hidden_size=width,
            mlp_dim=int(first.mlp.linear1.out_features),
            num_layers=self.depth,
            num_heads=int(first.attn.num_heads),
            masking_ratio=MASK_RATIO,
            decoder_hidden_size=96,
            decoder_mlp_dim=384,
            decoder_num_layers=2,
            decoder_num_heads=3,
            spatial_dims=len(input_size),
            qkv_bias=first.attn.qkv.bias is not None,
        )
        self.vit = vit

    def loss(self, a: torch.Tensor, b: torch.Tensor | None, fraction: float) -> torch.Tensor:
        predicted, mask = self.mae(a)  # (B, patches, prod(patch) * C), 1 where hidden
        error = ((predicted - _normalized(patchify(a, self.patch))) ** 2).mean(dim=-1)
        hidden = mask.to(error.dtype)
        return (error * hidden).sum() / hidden.sum()

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The MAE's encoder tensors under the ViT's names (``blocks.N`` -> ``norm``; ``cls_token`` if it has one)."""
        own = self.vit.state_dict()
        out: dict[str, torch.Tensor] = {}
        for key, value in self.mae.state_dict().items():
            if key.startswith(f"blocks.{self.depth}."):
                key = "norm." + key[len(f"blocks.{self.depth}.") :]
            if key in own and tuple(own[key].shape) == tuple(value.shape):
                out[key] = value
        return out

    def finish(self) -> None:
        state = self.encoder_state()
        missing = [k for k in self.vit.state_dict() if k not in state and not k.startswith("classification_head")]
        if missing:  # a MONAI version whose MAE no longer mirrors its ViT: say so rather than save a half encoder
            raise ConfigError("--method", f"mae: MONAI's MaskedAutoEncoderViT lacks the ViT tensors {missing[:4]}")
        with torch.no_grad():
            self.vit.load_state_dict(state, strict=False)


def build_mae(encoder: nn.Module, input_size: list[int]) -> MAE:
    """The MAE method for ``encoder`` (from :func:`mae_encoder`) on images of ``input_size``."""
    found = find_vit(encoder)
    if found is None:
        raise ConfigError("--method", f"mae needs a ViT backbone ({VIT_BACKBONES})")
    path, vit = found
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(vit, VisionTransformer):
        return _TimmMAE(encoder, vit, input_size)
    return _MonaiMAE(encoder, vit, path, input_size)
