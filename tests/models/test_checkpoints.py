"""Starting from local checkpoints (medlens.models.checkpoints): formats, head replacement, channel adaptation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from medlens.core.errors import InputError
from medlens.models import create_model
from medlens.models.checkpoints import adapt_input_channels, load_pretrained, read_state_dict

HEAD = ("fc.weight", "fc.bias")


def small_net(dims: int = 2, channels: int = 1, classes: int = 2, seed: int = 0) -> nn.Module:
    """A narrow MONAI ResNet-10 (a few hundred kB) with its own random initialisation."""
    torch.manual_seed(seed)
    net = create_model(
        "monai_resnet10",
        output="image",
        spatial_dims=dims,
        in_channels=channels,
        num_classes=classes,
        input_size=[28] * dims,
        widen_factor=0.125,
    )
    return net.eval()


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    keys = [k for k in a if k not in skip]
    assert keys and set(keys) <= set(b)
    for key in keys:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture()
def source() -> nn.Module:
    return small_net(seed=1)


@pytest.mark.parametrize("form", ["plain", "lightning", "module_prefix", "nested_model", "safetensors"])
def test_checkpoint_formats_load(form: str, source: nn.Module, tmp_path: Path) -> None:
    state = source.state_dict()
    if form == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        payload = {
            "plain": state,
            "lightning": {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 3, "global_step": 120},
            "module_prefix": {f"module.{k}": v for k, v in state.items()},  # saved from DataParallel/DDP
            "nested_model": {"model": state, "optimizer": {"lr": 0.1}},
        }[form]
        path = tmp_path / "w.pt"
        torch.save(payload, path)
    assert_same_weights(read_state_dict(path), state)
    target = small_net(seed=2)
    assert not torch.equal(target.state_dict()["conv1.weight"], state["conv1.weight"])
    load_pretrained(target, path)
    assert_same_weights(target.state_dict(), state)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_create_model_with_pretrained(source: nn.Module, tmp_path: Path) -> None:
    torch.save(source.state_dict(), tmp_path / "w.pt")
    net = create_model(
        "monai_resnet10",
        output="image",
        spatial_dims=2,
        in_channels=1,
        num_classes=2,
        input_size=[28, 28],
        widen_factor=0.125,
        pretrained=str(tmp_path / "w.pt"),
    )
    assert_same_weights(net.state_dict(), source.state_dict())


def test_other_head_size_keeps_the_new_head(tmp_path: Path) -> None:
    five = small_net(classes=5, seed=1)
    torch.save(five.state_dict(), tmp_path / "five.pt")
    two = small_net(classes=2, seed=2)
    head_before = {k: two.state_dict()[k].clone() for k in HEAD}
    load_pretrained(two, tmp_path / "five.pt")
    after = two.state_dict()
    assert_same_weights(after, five.state_dict(), skip=HEAD)  # the backbone comes from the checkpoint
    assert_same_weights({k: after[k] for k in HEAD}, head_before)  # the head stays as initialised
    assert after["fc.weight"].shape == (2, five.state_dict()["fc.weight"].shape[1])


@pytest.mark.parametrize("dims", [2, 3])
def test_rgb_checkpoint_into_gray_model(dims: int, tmp_path: Path) -> None:
    rgb = small_net(dims=dims, channels=3, seed=1)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    gray = small_net(dims=dims, channels=1, seed=2)
    load_pretrained(gray, tmp_path / "rgb.pt")
    state = gray.state_dict()
    torch.testing.assert_close(state["conv1.weight"], rgb.state_dict()["conv1.weight"].sum(dim=1, keepdim=True))
    assert_same_weights(state, rgb.state_dict(), skip=("conv1.weight",))
    # a gray image gives the same logits as that image repeated into the RGB model
    x = torch.randn(2, 1, *[16] * dims)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, *[1] * dims)), rtol=1e-4, atol=1e-4)


def test_gray_checkpoint_into_rgb_model(tmp_path: Path) -> None:
    gray = small_net(channels=1, seed=1)
    torch.save(gray.state_dict(), tmp_path / "gray.pt")
    rgb = small_net(channels=3, seed=2)
    load_pretrained(rgb, tmp_path / "gray.pt")
    assert rgb.state_dict()["conv1.weight"].shape[1] == 3
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), gray(x), rtol=1e-4, atol=1e-4)


def test_adapt_input_channels_rule() -> None:
    w = torch.randn(4, 3, 3, 3, 3)  # a 3D convolution: (O, I, D, H, W)
    assert torch.equal(adapt_input_channels(w, 3), w)
    torch.testing.assert_close(adapt_input_channels(w, 1), w.sum(1, keepdim=True))
    five = adapt_input_channels(w, 5)
    assert five.shape == (4, 5, 3, 3, 3)
    torch.testing.assert_close(five[:, 3:], w[:, :2] * 3 / 5)
    half = adapt_input_channels(torch.randn(2, 3, 3, 3).half(), 1)
    assert half.dtype == torch.float16


def test_only_the_input_convolution_is_adapted(tmp_path: Path) -> None:
    """A deeper convolution of another width is left as initialised, not squeezed into shape."""
    source = small_net(seed=1).state_dict()
    key = "layer2.0.conv1.weight"  # (O, I, 3, 3)
    source[key] = torch.randn(source[key].shape[0], source[key].shape[1] * 2, 3, 3)
    torch.save(source, tmp_path / "w.pt")
    target = small_net(seed=2)
    before = target.state_dict()[key].clone()
    load_pretrained(target, tmp_path / "w.pt")
    assert torch.equal(target.state_dict()[key], before)
    torch.testing.assert_close(target.state_dict()["conv1.weight"], source["conv1.weight"])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is a text file, not weights\n", "not a plain checkpoint|not a readable safetensors"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "not a plain checkpoint|not a readable safetensors"),
    ],
)
def test_non_checkpoint_file(content: bytes, match: str, tmp_path: Path) -> None:
    for name in ("w.pt", "w.safetensors"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=match) as info:
            load_pretrained(small_net(), path)
        assert info.value.path == path


def test_checkpoint_without_tensors_or_matching_weights(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(InputError, match="no state dict"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="no weight in the checkpoint matches"):
        load_pretrained(small_net(), tmp_path / "other.pt")
    with pytest.raises(InputError, match="not found"):
        load_pretrained(small_net(), tmp_path / "missing.pt")
