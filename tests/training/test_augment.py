"""Batched random augmentation (medlens.training.augment.augment_batch), 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from medlens.training.augment import augment_batch
from medlens.training.plan import AugmentPlan

FULL = AugmentPlan(
    flip_axes=[0, 1],
    rotate_degrees=15.0,
    scale=[0.9, 1.1],
    translate=0.06,
    brightness=0.1,
    contrast=0.15,
    noise_std=0.05,
    spatial_probability=0.8,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blob(shape: tuple[int, ...], sigma: tuple[float, ...], centre: tuple[float, ...] | None = None) -> torch.Tensor:
    """A Gaussian blob (1, 1, *shape), centred on the image centre unless ``centre`` is given (in pixels)."""
    centre = centre or tuple((s - 1) / 2 for s in shape)
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    r2 = sum(((a - c) / s) ** 2 for a, c, s in zip(axes, centre, sigma, strict=True))
    return torch.exp(-r2 / 2)[None, None]


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass (B, dims) and variance along each axis (B, dims) of single-channel images (B, 1, ...)."""
    dims = x.ndim - 2
    w = x[:, 0].clamp(min=0)
    total = w.flatten(1).sum(1)
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in x.shape[2:]], indexing="ij")
    com = torch.stack([(w * a).flatten(1).sum(1) / total for a in axes], 1)
    var = torch.stack(
        [(w * (a - com[:, i].view(-1, *[1] * dims)) ** 2).flatten(1).sum(1) / total for i, a in enumerate(axes)], 1
    )
    return com, var


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 2, 12, 14, 16)])
def test_no_op_plan_returns_the_input(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    assert torch.equal(augment_batch(x, AugmentPlan(), gen()), x)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (4, 3, 32, 24), (3, 2, 12, 14, 16)])
def test_shapes_and_dtype_kept(shape: tuple[int, ...]) -> None:
    plan = FULL.model_copy(update={"flip_axes": list(range(len(shape) - 2))})
    x = torch.randn(shape)
    out = augment_batch(x, plan, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, x)


@pytest.mark.parametrize(("shape", "axis"), [((16, 1, 20, 24), 1), ((16, 1, 20, 24), 0), ((12, 2, 6, 8, 10), 0)])
def test_flip_only_gives_the_input_or_its_mirror(shape: tuple[int, ...], axis: int) -> None:
    plan = AugmentPlan(flip_axes=[axis], spatial_probability=1.0)
    x = torch.randn(shape)
    out = augment_batch(x, plan, gen(3))
    mirrored = torch.flip(x, dims=[2 + axis])
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x, strict=True)]
    flipped = [torch.allclose(o, m, atol=1e-5) for o, m in zip(out, mirrored, strict=True)]
    assert all(s or f for s, f in zip(same, flipped, strict=True))
    assert any(same) and any(flipped)  # both outcomes happen in a batch of 12-16


def test_spatial_probability_zero_keeps_geometry() -> None:
    x = torch.randn(6, 1, 20, 20)
    plan = AugmentPlan(flip_axes=[0, 1], rotate_degrees=30, scale=[0.8, 1.2], translate=0.1, spatial_probability=0.0)
    torch.testing.assert_close(augment_batch(x, plan, gen()), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(33, 33), (32, 48), (21, 21, 21), (16, 20, 24)])
def test_rotation_keeps_a_centred_blob_centred_and_round(shape: tuple[int, ...]) -> None:
    x = blob(shape, (2.0,) * len(shape)).repeat(8, 1, *[1] * len(shape))
    out = augment_batch(x, AugmentPlan(rotate_degrees=45.0, spatial_probability=1.0), gen(1))
    com, var = moments(out)
    centre = torch.tensor([(s - 1) / 2 for s in shape])
    assert (com - centre).abs().max() < 0.5
    # a rigid rotation keeps a round blob round, also on a non-square grid
    _, var_in = moments(x)
    torch.testing.assert_close(var, var_in, rtol=0.12, atol=0)


def test_rotation_turns_an_elongated_blob() -> None:
    x = blob((41, 41), (5.0, 1.5)).repeat(8, 1, 1, 1)  # long along the first axis
    out = augment_batch(x, AugmentPlan(rotate_degrees=90.0, spatial_probability=1.0), gen(2))
    _, var = moments(out)
    _, var_in = moments(x)
    assert (var[:, 1] > var_in[:, 1] * 1.5).any()  # some samples turned by a large angle
    torch.testing.assert_close(var.sum(1), var_in.sum(1), rtol=0.05, atol=0)  # trace of the inertia is invariant


def test_scale_zooms_in_for_factors_above_one() -> None:
    x = blob((41, 41), (4.0, 4.0)).repeat(4, 1, 1, 1)
    out = augment_batch(x, AugmentPlan(scale=[1.5, 1.5], spatial_probability=1.0), gen())
    _, var = moments(out)
    _, var_in = moments(x)
    torch.testing.assert_close(var / var_in, torch.full_like(var, 1.5**2), rtol=0.05, atol=0)


def test_translation_bounded_by_the_plan() -> None:
    size = 40
    x = blob((size, size), (3.0, 3.0)).repeat(32, 1, 1, 1)
    out = augment_batch(x, AugmentPlan(translate=0.1, spatial_probability=1.0), gen(4))
    com, _ = moments(out)
    shift = com - (size - 1) / 2
    assert shift.abs().max() <= 0.1 * size + 0.5
    assert shift.abs().max() > 0.05 * size


def test_intensity_is_a_per_sample_gain_and_bias() -> None:
    x = torch.randn(8, 2, 16, 16)
    out = augment_batch(x, AugmentPlan(brightness=0.2, contrast=0.3), gen())
    for o, i in zip(out, x, strict=True):
        a = torch.stack([i.flatten(), torch.ones(i.numel())], 1)
        gain, bias = torch.linalg.lstsq(a, o.flatten()[:, None]).solution[:, 0]
        torch.testing.assert_close(o, gain * i + bias, atol=1e-4, rtol=0)
        assert 0.7 - 1e-5 <= gain <= 1.3 + 1e-5 and -0.2 - 1e-5 <= bias <= 0.2 + 1e-5


def test_noise_has_at_most_the_planned_std_in_units_of_the_image() -> None:
    """noise_std is in standard deviations of each image (plan version 2), not in raw units."""
    x = torch.randn(16, 1, 32, 32) * 5.0  # images with a standard deviation of about 5
    out = augment_batch(x, AugmentPlan(noise_std=0.1), gen())
    stds = (out - x).flatten(1).std(1)
    assert stds.max() <= 0.1 * 5.0 * 1.1 and stds.max() > 0.02 * 5.0


def test_gamma_keeps_the_range_and_bends_the_middle() -> None:
    x = torch.linspace(0, 1, 101).repeat(8, 1, 1, 1)  # (8, 1, 1, 101): a ramp from 0 to 1
    out = augment_batch(x, AugmentPlan(gamma=0.5), gen(5))
    torch.testing.assert_close(out[..., 0], x[..., 0]) and torch.testing.assert_close(out[..., -1], x[..., -1])
    middle = out[..., 50].flatten()
    assert (middle != 0.5).any() and ((middle > 0.5**1.5 - 1e-5) & (middle < 0.5**0.5 + 1e-5)).all()


def test_intensity_probability_zero_changes_nothing() -> None:
    x = torch.randn(8, 1, 16, 16)
    plan = AugmentPlan(brightness=0.5, contrast=0.5, gamma=0.5, noise_std=0.5, intensity_probability=0.0)
    torch.testing.assert_close(augment_batch(x, plan, gen()), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (2, 1, 10, 10, 10)])
def test_seeded_generator_is_reproducible(shape: tuple[int, ...]) -> None:
    plan = FULL.model_copy(update={"flip_axes": list(range(len(shape) - 2))})
    x = torch.randn(shape)
    a = augment_batch(x, plan, gen(11))
    b = augment_batch(x, plan, gen(11))
    c = augment_batch(x, plan, gen(12))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
