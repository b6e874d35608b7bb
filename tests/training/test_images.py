"""Network inputs from images (to_input) and their normalisation (normalize), on real MedMNIST pixels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medlens.core.errors import InputError
from medlens.core.image import Image, default_affine
from medlens.training.images import normalize, to_input
from medlens.training.plan import DataPlan


@pytest.fixture(scope="module")
def xray(medmnist_subset: Callable) -> Image:
    """A real 28x28 PneumoniaMNIST image, (1, 28, 28) uint8."""
    return Image(medmnist_subset("pneumoniamnist")["train_images"][0][None], default_affine(2))


@pytest.fixture(scope="module")
def volume(medmnist_subset: Callable) -> Image:
    """A real 28^3 AdrenalMNIST3D volume, (1, 28, 28, 28) uint8."""
    return Image(medmnist_subset("adrenalmnist3d")["train_images"][0][None], default_affine(3))


def test_same_size_is_a_float_copy(xray: Image) -> None:
    out = to_input(xray, DataPlan(input_size=[28, 28]))
    assert out.dtype == np.float32 and out.shape == (1, 28, 28)
    np.testing.assert_array_equal(out, xray.array.astype(np.float32))


def test_upsampling_matches_bilinear_interpolation(xray: Image) -> None:
    out = to_input(xray, DataPlan(input_size=[64, 48]))
    assert out.shape == (1, 64, 48) and out.dtype == np.float32
    reference = F.interpolate(torch.from_numpy(xray.array[None].astype(np.float32)), size=(64, 48), mode="bilinear")
    np.testing.assert_allclose(out, reference[0].numpy(), atol=1e-3)


@pytest.mark.parametrize("size", [[14, 14], [20, 10]])
def test_downsampling_is_smoothed_and_keeps_the_range(xray: Image, size: list[int]) -> None:
    out = to_input(xray, DataPlan(input_size=size))
    assert out.shape == (1, *size)
    src = xray.array.astype(np.float32)
    assert src.min() - 1e-3 <= out.min() and out.max() <= src.max() + 1e-3
    assert out.mean() == pytest.approx(src.mean(), rel=0.05)


def test_volume_resized_in_3d(volume: Image) -> None:
    out = to_input(volume, DataPlan(input_size=[16, 16, 20]))
    assert out.shape == (1, 16, 16, 20)
    assert out.mean() == pytest.approx(volume.array.astype(np.float32).mean(), rel=0.1)


def test_gray_repeated_into_three_channels(xray: Image) -> None:
    out = to_input(xray, DataPlan(input_size=[28, 28], channels=3))
    assert out.shape == (3, 28, 28)
    for c in range(3):
        np.testing.assert_array_equal(out[c], xray.array[0])


def test_rgb_averaged_into_gray_and_rgba_into_rgb(xray: Image) -> None:
    gray = xray.array[0].astype(np.float32)
    rgb = np.stack([gray, gray * 0.5, 255 - gray])
    out = to_input(Image(rgb, default_affine(2)), DataPlan(input_size=[28, 28], channels=1))
    np.testing.assert_allclose(out[0], rgb.mean(axis=0), rtol=1e-6)
    rgba = np.concatenate([rgb, np.full_like(gray, 255)[None]])
    np.testing.assert_array_equal(
        to_input(Image(rgba, default_affine(2)), DataPlan(input_size=[28, 28], channels=3)), rgb
    )


def test_unsupported_channel_count(xray: Image) -> None:
    two = Image(np.repeat(xray.array, 2, axis=0), default_affine(2))
    with pytest.raises(InputError, match="2 channels, the model takes 3") as info:
        to_input(two, DataPlan(input_size=[28, 28], channels=3), source="two.nii.gz")
    assert info.value.path.name == "two.nii.gz"


def test_wrong_dimensionality(xray: Image, volume: Image) -> None:
    with pytest.raises(InputError, match="3D image given to a 2D model") as info:
        to_input(volume, DataPlan(input_size=[28, 28]), source="scan.nii.gz")
    assert info.value.path.name == "scan.nii.gz"
    with pytest.raises(InputError, match="2D image given to a 3D model"):
        to_input(xray, DataPlan(input_size=[28, 28, 28]))


def test_zscore() -> None:
    batch = torch.tensor([[[0.0, 10.0, 50.0, 300.0]]])
    out = normalize(batch, DataPlan(input_size=[4], mean=40.0, std=20.0))
    torch.testing.assert_close(out, (batch - 40) / 20)
    clipped = normalize(batch, DataPlan(input_size=[4], mean=40.0, std=20.0, clip=[5.0, 100.0]))
    torch.testing.assert_close(
        clipped, torch.tensor([[[(5 - 40) / 20, (10 - 40) / 20, (50 - 40) / 20, (100 - 40) / 20]]])
    )


def test_zscore_with_the_datasets_statistics_standardises_it(xray: Image) -> None:
    x = torch.from_numpy(xray.array[None].astype(np.float32))
    out = normalize(x, DataPlan(input_size=[28, 28], mean=float(x.mean()), std=float(x.std(unbiased=False))))
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)


def test_minmax_and_none() -> None:
    batch = torch.tensor([[[-5.0, 0.0, 50.0, 100.0, 200.0]]])
    out = normalize(batch, DataPlan(input_size=[5], normalization="minmax", clip=[0.0, 100.0]))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.0, 0.5, 1.0, 1.0]]]))
    assert torch.equal(normalize(batch, DataPlan(input_size=[5], normalization="none")), batch)
