"""The slice-attention classifier (models/slice_attention.py): built for volumes, one attention weight per slice
along the chosen axis, weights summing to 1, and slices really taken along that axis (moving the slices moves
their weights with them, and the answer stays: attention pooling does not depend on the slices' order)."""

from __future__ import annotations

import pytest
import torch

from medlens.core.errors import ConfigError
from medlens.models import create_model
from medlens.models.slice_attention import default_slice_axis, ensemble_slice_attention


def _build(input_size: list[int], **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model(
        "slice_attention", output="image", spatial_dims=3, in_channels=1, num_classes=2, input_size=input_size,
        widen_factor=0.25, **kwargs,
    )  # fmt: skip
    return net.eval()


def test_default_axis_is_the_one_with_fewest_voxels_last_on_a_tie() -> None:
    assert default_slice_axis([28, 20, 24]) == 1
    assert default_slice_axis([16, 28, 16]) == 2
    assert default_slice_axis([28, 28, 28]) == 2
    assert _build([28, 20, 24]).slice_axis == 1


@pytest.mark.parametrize(("axis", "size"), [(None, 16), (0, 24), (1, 20)])
def test_one_weight_per_slice_summing_to_one(axis: int | None, size: int) -> None:
    net = _build([24, 20, 16], **({} if axis is None else {"slice_axis": axis}))
    x = torch.randn(3, 1, 24, 20, 16)
    with torch.no_grad():
        logits, weights = net.forward_with_attention(x)
    assert logits.shape == (3, 2)
    assert weights.shape == (3, size)
    assert torch.allclose(weights.sum(dim=1), torch.ones(3), atol=1e-5)
    assert (weights > 0).all()
    assert torch.equal(net(x), logits)


def test_attention_follows_the_slices_along_the_chosen_axis() -> None:
    net = _build([16, 16, 20], slice_axis=2)
    x = torch.randn(2, 1, 16, 16, 20)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, weights = net.forward_with_attention(x)
        moved_logits, moved = net.forward_with_attention(x[..., order])
        other_axis = net.slice_attention(x.flip(2))  # in-plane flip: other slice contents
    assert torch.allclose(moved, weights[:, order], atol=1e-5)
    assert torch.allclose(moved_logits, logits, atol=1e-4)
    assert not torch.allclose(other_axis, weights, atol=1e-4)
    found = ensemble_slice_attention([net, net], x)
    assert found is not None and found[0] == 2
    assert torch.allclose(torch.from_numpy(found[1]), weights, atol=1e-5)


def test_networks_without_attention_give_none_and_bad_axes_are_refused() -> None:
    plain = create_model(
        "monai_resnet10", output="image", spatial_dims=3, in_channels=1, num_classes=2, input_size=[16] * 3
    )
    assert ensemble_slice_attention([plain.eval()], torch.randn(1, 1, 16, 16, 16)) is None
    with pytest.raises(ConfigError, match="slice_axis"):
        _build([16, 16, 16], slice_axis=3)
    with pytest.raises(ConfigError, match="is 3D"):
        create_model("slice_attention", output="image", spatial_dims=2, in_channels=1, num_classes=2,
                     input_size=[28, 28])  # fmt: skip
