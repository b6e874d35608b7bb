"""Self-supervised pretraining pieces: encoders named as the task's network, views, the three methods, and
``model.init`` loading by name and shape."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from medlens.core.errors import InputError
from medlens.models import create_model
from medlens.models.checkpoints import load_init
from medlens.training.pretraining import build_encoder, pretrain_encoder
from medlens.training.views import random_view, view_plan

RESNET = {"widen_factor": 0.25, "stem_stride": 1, "stem_pool": False}


def _task_net(dims: int = 2, channels: int = 1) -> torch.nn.Module:
    return create_model(
        "monai_resnet18", output="image", spatial_dims=dims, in_channels=channels, num_classes=3,
        input_size=[28] * dims, **RESNET,
    )  # fmt: skip


def _pretrain_folder(folder: Path, encoder: torch.nn.Module, dims: int, channels: int) -> Path:
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(folder / "encoder.safetensors"))
    (folder / "pretrain.yaml").write_text(yaml.safe_dump({"spatial_dims": dims, "channels": channels}))
    return folder


def test_encoder_is_the_task_network_without_its_head() -> None:
    encoder, dim = build_encoder("monai_resnet18", RESNET, spatial_dims=2, channels=1, input_size=[28, 28])
    task = _task_net()
    assert encoder(torch.zeros(2, 1, 28, 28)).shape == (2, dim)
    names = set(encoder.state_dict())
    assert names == {k for k in task.state_dict() if not k.startswith("fc.")}
    assert all(encoder.state_dict()[k].shape == task.state_dict()[k].shape for k in names)


def test_views_differ_per_sample_keep_shape_and_repeat_with_a_seed() -> None:
    for dims in (2, 3):
        x = torch.randn(4, 1, *[16] * dims)
        a = random_view(x, view_plan(dims), torch.Generator().manual_seed(0))
        b = random_view(x, view_plan(dims), torch.Generator().manual_seed(1))
        again = random_view(x, view_plan(dims), torch.Generator().manual_seed(0))
        assert a.shape == x.shape and torch.isfinite(a).all()
        assert not torch.allclose(a, b) and not torch.allclose(a, x)
        assert torch.allclose(a, again)
    assert view_plan(2).flip_axes == [0, 1] and view_plan(3).flip_axes == [0, 1, 2]


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_each_method_trains_the_encoder(method: str) -> None:
    encoder, dim = build_encoder("monai_resnet18", RESNET, spatial_dims=2, channels=1, input_size=[28, 28])
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    calls: list[tuple[str, int, int | None]] = []
    result = pretrain_encoder(
        torch.randn(16, 1, 28, 28), encoder, dim, method, max_epochs=1, batch_size=8,
        progress=lambda s, d, t: calls.append((s, d, t)),
    )  # fmt: skip
    assert result.steps == 2 and result.epochs == 1.0 and len(result.losses) == 2
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert set(result.state) == set(before)
    assert any(not torch.equal(result.state[k], before[k]) for k in before if k.endswith("weight"))
    assert calls and calls[-1][0] == f"pretraining {method}"


def test_the_learning_rate_anneals_by_the_epoch_cap_when_it_comes_before_the_budget() -> None:
    """A 30-minute budget and 4 epochs of 2 steps: the cosine follows the epochs and ends near zero."""
    encoder, dim = build_encoder("monai_resnet18", RESNET, spatial_dims=2, channels=1, input_size=[28, 28])
    result = pretrain_encoder(torch.randn(16, 1, 28, 28), encoder, dim, "simclr", max_epochs=4, batch_size=8,
                              budget_minutes=30, lr=1e-3)  # fmt: skip
    rates = result.learning_rates
    assert result.steps == len(rates) == 8 and rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in itertools.pairwise(rates)) and rates[-1] < 0.05e-3


def test_init_loads_by_name_and_shape_and_reports(tmp_path: Path) -> None:
    encoder, _ = build_encoder("monai_resnet18", RESNET, spatial_dims=2, channels=1, input_size=[28, 28])
    folder = _pretrain_folder(tmp_path / "pre", encoder, 2, 1)
    net = _task_net()
    report = load_init(net, folder, spatial_dims=2, channels=1)
    assert len(report.loaded) == len(encoder.state_dict()) and not report.skipped
    assert sorted(report.kept) == ["fc.bias", "fc.weight"]  # the head stays as built
    assert torch.equal(net.state_dict()["conv1.weight"], encoder.state_dict()["conv1.weight"])
    # another width: every tensor of the same name has another shape, and is skipped, named with both shapes
    other, _ = build_encoder(
        "monai_resnet18", {**RESNET, "widen_factor": 0.5}, spatial_dims=2, channels=1, input_size=[28, 28]
    )
    wider = _pretrain_folder(tmp_path / "wider", other, 2, 1)
    with pytest.raises(InputError, match="no tensor matches"):
        load_init(_task_net(), wider, spatial_dims=2, channels=1)


def test_init_refuses_other_dims_or_channels_naming_the_file(tmp_path: Path) -> None:
    encoder3d, _ = build_encoder("monai_resnet18", RESNET, spatial_dims=3, channels=1, input_size=[28, 28, 28])
    folder = _pretrain_folder(tmp_path / "pre3d", encoder3d, 3, 1)
    with pytest.raises(InputError, match=r"pre3d/pretrain.yaml.*pretrained in 3D; this task is 2D"):
        load_init(_task_net(), folder, spatial_dims=2, channels=1)
    # a plain weights file (no pretrain.yaml) is judged by its convolutions
    plain = tmp_path / "weights.pt"
    torch.save(_task_net(channels=3).state_dict(), plain)
    with pytest.raises(InputError, match=r"weights.pt.*3 input channel\(s\); this task has 1"):
        load_init(_task_net(), plain, spatial_dims=2, channels=1)
    report = load_init(_task_net(channels=3), plain, spatial_dims=2, channels=3)  # torch.load(weights_only=True)
    assert len(report.loaded) == len(_task_net().state_dict())
    with pytest.raises(InputError, match="no such pretrain folder"):
        load_init(_task_net(), tmp_path / "missing", spatial_dims=2, channels=1)


def test_unet_encoder_loads_into_the_segmentation_network(tmp_path: Path) -> None:
    encoder, dim = build_encoder("dynunet", {}, spatial_dims=3, channels=1, input_size=[32, 32, 32])
    assert encoder(torch.zeros(2, 1, 32, 32, 32)).shape == (2, dim)
    folder = _pretrain_folder(tmp_path / "pre", encoder, 3, 1)
    net = create_model("dynunet", output="pixel", spatial_dims=3, in_channels=1, num_classes=3, input_size=[32] * 3)
    report = load_init(net, folder, spatial_dims=3, channels=1)
    assert len(report.loaded) == len(encoder.state_dict()) and not report.skipped
    assert any(k.startswith("upsamples.") for k in report.kept)  # the expanding path stays as built
    key = "input_block.conv1.conv.weight"
    assert torch.equal(net.state_dict()[key], encoder.state_dict()[key])
