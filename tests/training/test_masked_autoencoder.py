"""Masked-autoencoder pretraining on real images: the trained ViT tensors land in the task's classifier and in UNETR's
encoder (equal after ``model.init``), the patch order matches the patch embedding, and non-ViT backbones are
refused naming ``--method``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from medlens.core.errors import ConfigError
from medlens.models import create_model
from medlens.models.checkpoints import load_init
from medlens.training.masked_autoencoder import patchify
from medlens.training.pretraining import build_encoder, pretrain_encoder


def _images(subset: Callable[..., dict[str, np.ndarray]], name: str, n: int) -> torch.Tensor:
    """``n`` real training images of a MedMNIST archive, scaled to [0, 1], with a channel axis."""
    return torch.tensor(subset(name, n_train=n, n_val=1, n_test=1)["train_images"]).float().div(255).unsqueeze(1)


def _save(folder: Path, state: dict[str, torch.Tensor], dims: int) -> Path:
    folder.mkdir()
    save_file(state, str(folder / "encoder.safetensors"))
    (folder / "pretrain.yaml").write_text(yaml.safe_dump({"spatial_dims": dims, "channels": 1}))
    return folder


@pytest.mark.parametrize(("name", "kwargs"), [("vit_tiny", {"depth": 2}), ("monai_vit", {"num_layers": 2})])
def test_mae_weights_land_in_the_2d_classifier(
    name: str, kwargs: dict[str, int], medmnist_subset: Callable[..., dict[str, np.ndarray]], tmp_path: Path
) -> None:
    x = _images(medmnist_subset, "pneumoniamnist", 16)
    encoder, dim = build_encoder(name, kwargs, spatial_dims=2, channels=1, input_size=[28, 28], method="mae")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = pretrain_encoder(x, encoder, dim, "mae", max_epochs=2, batch_size=8, budget_minutes=1)
    assert result.steps == 4 and all(np.isfinite(result.losses))
    # training changed the encoder's own tensors (for MONAI: copied back from its MaskedAutoEncoderViT)
    assert any(not torch.equal(result.state[k], before[k]) for k in before if "blocks.0" in k)
    net = create_model(
        name, output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28], **kwargs
    )
    report = load_init(net, _save(tmp_path / "pre", result.state, 2), spatial_dims=2, channels=1)
    assert not report.skipped and len(report.loaded) == len(result.state)
    assert all(torch.equal(net.state_dict()[k], result.state[k]) for k in report.loaded)
    assert {k.rsplit(".", 1)[0] for k in report.kept} == {"head" if name == "vit_tiny" else "classification_head"}


def test_mae_weights_land_in_the_unetr_encoder(
    medmnist_subset: Callable[..., dict[str, np.ndarray]], tmp_path: Path
) -> None:
    volumes = _images(medmnist_subset, "adrenalmnist3d", 4)  # 28^3 real volumes; UNETR wants sides divisible by 16
    x = torch.nn.functional.interpolate(volumes, size=(32, 32, 32), mode="trilinear")
    encoder, dim = build_encoder("unetr", {}, spatial_dims=3, channels=1, input_size=[32] * 3, method="mae")
    result = pretrain_encoder(x, encoder, dim, "mae", max_epochs=1, batch_size=4, budget_minutes=1)
    assert result.steps == 1 and set(k.split(".")[0] for k in result.state) == {"vit"}
    net = create_model("unetr", output="pixel", spatial_dims=3, in_channels=1, num_classes=2, input_size=[32] * 3)
    report = load_init(net, _save(tmp_path / "pre", result.state, 3), spatial_dims=3, channels=1)
    assert not report.skipped and len(report.loaded) == len(result.state)
    assert all(torch.equal(net.state_dict()[k], result.state[k]) for k in report.loaded)
    assert report.kept and not any(k.startswith("vit.") for k in report.kept)  # the convolutional decoder as built


def test_patches_follow_the_patch_embedding_order() -> None:
    # a 2x3 grid of 4x4 patches, patch k filled with k: patchify must list them row by row, as the conv embedding does
    image = torch.arange(6.0).reshape(1, 1, 2, 3).repeat_interleave(4, 2).repeat_interleave(4, 3)
    patches = patchify(image, [4, 4])
    assert patches.shape == (1, 6, 16) and torch.equal(patches[0, :, 0], torch.arange(6.0))
    assert torch.equal(patches[0].min(1).values, patches[0].max(1).values)  # each row one whole patch
    volume = torch.arange(8.0).reshape(1, 1, 2, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.equal(patchify(volume.repeat_interleave(2, 4), [2, 2, 2])[0, :, 0], torch.arange(8.0))


def test_mae_on_a_network_without_a_vit_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--method.*mae needs a ViT backbone.*resnet18 has none") as caught:
        build_encoder("resnet18", {}, spatial_dims=2, channels=1, input_size=[28, 28], method="mae")
    assert "\n" not in str(caught.value)
