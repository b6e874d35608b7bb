"""Every registered network builds and runs (STYLE.md item 12, after timm's tests/test_models.py).

One generic contract, parametrised over the registry: built for each spatial dimensionality it declares,
with 1 and 3 input channels and a small input (2D 32x32, 3D 32^3), a batch of 2 gives finite logits of
shape (2, K) that depend on the input. None is skipped: the heaviest (MONAI ResNet-34 3D at full 32^3
resolution) takes about 3 s here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medlens.core.errors import ConfigError
from medlens.models import create_model, list_models
from medlens.models import registry as registry_module

SIZE = 32


def _entries() -> list[registry_module.ModelEntry]:
    # the registry's own entries, without building every model at collection time (list_models builds them
    # all to count parameters); test_list_models checks that both agree
    registry_module._load_builtin()
    entries = [e for e in registry_module._REGISTRY.values() if e.output == "image"]  # others: their tasks' tests
    return sorted(entries, key=lambda e: e.name)


CASES = [
    pytest.param(e.name, dims, channels, id=f"{e.name}-{dims}d-{channels}ch")
    for e in _entries()
    for dims in e.spatial_dims
    for channels in (1, 3)
]


@pytest.fixture(scope="module")
def listed() -> dict[str, dict]:
    return {row["name"]: row for row in list_models()}


def test_list_models_matches_registry(listed: dict[str, dict]) -> None:
    assert sorted(n for n, row in listed.items() if row["output"] == "image") == [e.name for e in _entries()]
    assert {"resnet18", "monai_resnet18", "monai_resnet10"} <= set(listed)
    for entry in _entries():
        row = listed[entry.name]
        assert row["spatial_dims"] == list(entry.spatial_dims)
        assert row["output"] == "image"  # one vector per image: classification, multi-label, regression
        assert row["description"]
    assert {r["name"] for r in list_models(output="pixel")} == {"dynunet", "unetr", "swinunetr"}
    assert {"retinanet", "fcos", "fasterrcnn"} <= {r["name"] for r in list_models(output="boxes")}


@pytest.mark.parametrize(("name", "dims", "channels"), CASES)
def test_forward(name: str, dims: int, channels: int, listed: dict[str, dict]) -> None:
    torch.manual_seed(0)
    k = 3 if channels == 1 else 5
    model = create_model(
        name, output="image", spatial_dims=dims, in_channels=channels, num_classes=k, input_size=[SIZE] * dims
    )
    model.eval()
    x = torch.randn(2, channels, *[SIZE] * dims)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, k)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the logits depend on the input
    positional = any("pos" in n for n, _ in model.named_parameters())  # grows with the input: 32 here, 64 listed
    if channels == 1 and dims == listed[name]["spatial_dims"][0] and not positional:
        # list_models counts a 2-class, 1-channel build: ours differs by the head's extra outputs only
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        extra = (k - 2) * (head.in_features + (head.bias is not None))
        assert sum(p.numel() for p in model.parameters()) == listed[name]["parameters"] + extra


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "densenet121", "monai_resnet18"])
def test_small_inputs_get_a_stride_1_stem(name: str) -> None:
    def first_conv(model: nn.Module) -> nn.Conv2d:
        return next(m for m in model.modules() if isinstance(m, nn.Conv2d))

    small = create_model(name, output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])
    large = create_model(name, output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[224, 224])
    assert first_conv(small).stride == (1, 1)
    assert first_conv(large).stride == (2, 2)


def test_multilabel_task_is_served() -> None:
    model = create_model("resnet18", output="image", spatial_dims=2, in_channels=1, num_classes=14, input_size=[28, 28])
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 14)


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match="resnet19") as info:
        create_model("resnet19", output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])
    assert info.value.key == "model.name"


def test_2d_model_asked_for_3d() -> None:
    with pytest.raises(ConfigError, match="2D, the data is 3D"):
        create_model("resnet18", output="image", spatial_dims=3, in_channels=1, num_classes=2, input_size=[28] * 3)


def test_3d_model_asked_for_2d(monkeypatch: pytest.MonkeyPatch) -> None:
    # every built-in 3D network also serves 2D, so register a 3D-only one for the duration of the test
    registry_module._load_builtin()
    entry = registry_module._REGISTRY["monai_resnet10"]
    monkeypatch.setitem(
        registry_module._REGISTRY,
        "only3d",
        registry_module.ModelEntry("only3d", entry.builder, entry.output, (3,), "test", "3D only"),
    )
    with pytest.raises(ConfigError, match="3D, the data is 2D"):
        create_model("only3d", output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])


def test_wrong_output_kind() -> None:
    with pytest.raises(ConfigError, match="pixel"):
        create_model("resnet18", output="pixel", spatial_dims=2, in_channels=1, num_classes=2, input_size=[28, 28])


@pytest.mark.parametrize(("size", "patch"), [([28, 28], 4), ([64, 64], 8), ([224, 224], 16), ([28, 28, 28], 4)])
def test_transformers_are_built_at_the_input_size(size: list[int], patch: int) -> None:
    from medlens.models.classifiers import patch_size_for

    assert patch_size_for(size) == patch
    if len(size) == 2 and size[0] <= 64:
        vit = create_model("vit_tiny", output="image", spatial_dims=2, in_channels=1, num_classes=2, input_size=size)
        assert vit.patch_embed.grid_size == (8 if size[0] == 64 else 7,) * 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "size"), [("unetr", [32, 32]), ("swinunetr", [64, 64]), ("unetr", [16, 16, 16])])
def test_transformer_segmenters_answer_per_pixel(name: str, size: list[int]) -> None:
    torch.manual_seed(0)
    net = create_model(name, output="pixel", spatial_dims=len(size), in_channels=1, num_classes=3, input_size=size)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 3, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "size"), [("unetr", [24, 24]), ("swinunetr", [32, 32])])
def test_transformer_segmenters_refuse_sizes_they_cannot_take(name: str, size: list[int]) -> None:
    with pytest.raises(ConfigError, match="divisible"):
        create_model(name, output="pixel", spatial_dims=2, in_channels=1, num_classes=2, input_size=size)
