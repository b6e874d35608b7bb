"""Planning rules (medlens.tasks.classification.planning.plan_classification) on hand-built fingerprints."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from medlens.data.dataset import Dataset
from medlens.data.fingerprint import compute_fingerprint
from medlens.tasks.base import get_task
from medlens.tasks.classification.config import ClassificationPlan
from medlens.tasks.classification.planning import plan_classification


def fingerprint(
    dims: int = 2,
    shape: int | list[int] = 28,
    train_counts: list[int] | None = None,
    modality: str = "OT",
    task: str = "classification",
    n_unique: int = 256,
    channels: int = 1,
) -> dict[str, Any]:
    """A fingerprint as ``compute_fingerprint`` writes it, with only the fields the rules read varied."""
    counts = train_counts or [500, 520]
    median = shape if isinstance(shape, list) else [shape] * dims
    n_train = sum(counts)
    return {
        "task": task,
        "spatial_dims": dims,
        "modality": modality,
        "n_cases": {
            "train": n_train,
            "val": n_train // 7,
            "test": n_train // 4,
            "all": n_train + n_train // 7 + n_train // 4,
        },
        "n_patients": n_train,
        "class_names": [f"c{i}" for i in range(len(counts))],
        "class_counts": {"train": counts, "val": counts, "test": counts},
        "shape": {"median": median, "min": median, "max": median},
        "spacing_median": [1.0] * dims,
        "channels": channels,
        "intensity": {
            "mean": 120.0,
            "std": 60.0,
            "min": 0.0,
            "max": 255.0 if n_unique > 2 else 1.0,
            "p00_5": 2.0,
            "p99_5": 250.0,
            "n_unique": n_unique,
        },
    }


def test_small_2d_images_get_a_stride_1_stem() -> None:
    plan = plan_classification(fingerprint(dims=2, shape=28))
    assert plan.data.input_size == [28, 28]
    assert plan.model.kwargs["stem_stride"] == 1
    assert plan.model.kwargs["stem_pool"] is False


def test_large_2d_images_shrink_and_keep_the_imagenet_stem() -> None:
    plan = plan_classification(fingerprint(dims=2, shape=[512, 640]))
    assert plan.data.input_size == [224, 224]
    assert plan.model.kwargs["stem_stride"] == 2
    assert plan.model.kwargs["stem_pool"] is True


def test_3d_64_gets_resnet10_with_pooling() -> None:
    plan = plan_classification(fingerprint(dims=3, shape=64))
    assert plan.spatial_dims == 3
    assert plan.data.input_size == [64, 64, 64]
    assert plan.model.name == "monai_resnet10"
    assert plan.model.kwargs["stem_pool"] is True


def test_3d_28_gets_resnet18_without_pooling_and_big_volumes_shrink() -> None:
    small = plan_classification(fingerprint(dims=3, shape=28))
    assert small.model.name == "monai_resnet18"
    assert small.model.kwargs["stem_pool"] is False
    big = plan_classification(fingerprint(dims=3, shape=[200, 180, 60]))
    assert big.data.input_size == [96, 96, 60]


def test_width_follows_data_size() -> None:
    assert plan_classification(fingerprint(train_counts=[1000, 1200])).model.kwargs["widen_factor"] == 0.5
    assert plan_classification(fingerprint(train_counts=[4000, 4200])).model.kwargs["widen_factor"] == 1.0


def test_imbalance_gives_inverse_frequency_class_weights() -> None:
    plan = plan_classification(fingerprint(train_counts=[900, 100]))
    assert plan.classification.class_weights == pytest.approx([1000 / (2 * 900), 1000 / (2 * 100)], abs=1e-3)
    three = plan_classification(fingerprint(train_counts=[600, 300, 100]))
    weights = three.classification.class_weights
    assert weights is not None and weights[0] < weights[1] < weights[2]
    # weighted counts are equal: every class contributes the same total weight
    assert [w * c for w, c in zip(weights, [600, 300, 100], strict=True)] == pytest.approx([1000 / 3] * 3, rel=1e-3)


@pytest.mark.parametrize("counts", [[500, 520], [500, 700], [300, 310, 290]])
def test_balanced_classes_get_no_weights(counts: list[int]) -> None:
    assert plan_classification(fingerprint(train_counts=counts)).classification.class_weights is None


@pytest.mark.parametrize("modality", ["XR", "DX", "dx", "CT", "MR"])
def test_lateral_modalities_are_not_mirrored(modality: str) -> None:
    plan = plan_classification(fingerprint(modality=modality))
    assert plan.augment.flip_axes == []
    assert "no mirroring" in plan.augment.why


@pytest.mark.parametrize(("modality", "dims"), [("OT", 2), ("SM", 2), ("OT", 3)])
def test_other_modalities_are_mirrored_on_every_axis(modality: str, dims: int) -> None:
    assert plan_classification(fingerprint(dims=dims, modality=modality)).augment.flip_axes == list(range(dims))


def test_binary_images_get_no_intensity_augmentation() -> None:
    plan = plan_classification(fingerprint(n_unique=2))
    assert (plan.augment.brightness, plan.augment.contrast, plan.augment.noise_std) == (0.0, 0.0, 0.0)
    grey = plan_classification(fingerprint(n_unique=200))
    assert grey.augment.brightness > 0 and grey.augment.contrast > 0


def test_ct_is_clipped_to_percentiles() -> None:
    plan = plan_classification(fingerprint(modality="CT"))
    assert plan.data.clip == [2.0, 250.0]
    assert (plan.data.mean, plan.data.std) == (120.0, 60.0)
    assert plan_classification(fingerprint(modality="OT", n_unique=200)).data.clip is None


def test_multilabel_uses_bce_without_class_weights() -> None:
    plan = plan_classification(fingerprint(task="multilabel", train_counts=[900, 50, 300]))
    assert plan.task == "multilabel" and plan.multilabel
    assert plan.classification.class_weights is None
    assert plan.classification.label_smoothing == 0.0
    assert not plan_classification(fingerprint()).multilabel


def test_batch_size_gives_at_least_8_steps_per_epoch() -> None:
    for n in (100, 1000, 20000):
        plan = plan_classification(fingerprint(train_counts=[n // 2, n - n // 2]))
        batch = plan.train.batch_size
        assert 8 <= batch <= 128 and batch & (batch - 1) == 0  # a power of two
        assert n // batch >= 8 or batch == 8


def test_budget_only_without_gpu() -> None:
    assert plan_classification(fingerprint(), has_gpu=False).train.budget_minutes is not None
    assert plan_classification(fingerprint(), has_gpu=True).train.budget_minutes is None


@pytest.mark.parametrize(
    "fp",
    [
        fingerprint(),
        fingerprint(dims=3, shape=64, modality="CT", train_counts=[900, 100]),
        fingerprint(task="multilabel", train_counts=[5, 7, 9, 11]),
        fingerprint(shape=[300, 400], channels=3, n_unique=2),
    ],
)
def test_plan_validates_and_every_note_is_a_string(fp: dict[str, Any]) -> None:
    plan = plan_classification(fp)
    assert ClassificationPlan.model_validate(plan.model_dump()) == plan
    assert plan.notes and all(isinstance(n, str) and n for n in plan.notes)
    assert isinstance(plan.model.why, str) and plan.model.why
    assert plan.class_names == fp["class_names"]
    assert plan.data.channels == fp["channels"]
    assert len(plan.data.input_size) == fp["spatial_dims"]


def test_plan_from_a_real_fingerprint_builds_a_working_network(pneumonia_dataset: Dataset) -> None:
    from medlens.models import create_model

    task = get_task("classification")
    plan = plan_classification(compute_fingerprint(pneumonia_dataset, task_part=task.fingerprint))
    assert plan.augment.flip_axes == []  # PneumoniaMNIST is DX
    assert plan.data.input_size == [28, 28]
    net = create_model(
        plan.model.name,
        output="image",
        spatial_dims=plan.spatial_dims,
        in_channels=plan.data.channels,
        num_classes=len(plan.class_names),
        input_size=plan.data.input_size,
        dropout=plan.model.dropout,
        **plan.model.kwargs,
    ).eval()
    with torch.no_grad():
        out = net(torch.randn(2, plan.data.channels, *plan.data.input_size))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert math.isfinite(plan.data.mean) and plan.data.std > 0


def test_cpu_budget_narrows_width_until_enough_epochs() -> None:
    """On CPU the width halves until the budget covers MIN_EPOCHS epochs at the assumed throughput."""
    from medlens.tasks.classification.planning import plan_classification
    from medlens.training.image_planning import CPU_GFLOPS, MIN_EPOCHS

    fp = _fingerprint_for_cost()
    n_train = fp["n_cases"]["train"]
    seen: list[float] = []

    def cost(name: str, kwargs: dict, *, input_size: list[int]) -> float:
        seen.append(kwargs["widen_factor"])
        return 8.0 * kwargs["widen_factor"] ** 2  # GFLOPs per image grow with the square of the width

    plan = plan_classification(fp, has_gpu=False, cost=cost)
    width = plan.model.kwargs["widen_factor"]
    epochs = (
        plan.train.budget_minutes * 60 * CPU_GFLOPS[3] / (cost("x", {"widen_factor": width}, input_size=[]) * n_train)
    )
    assert seen[0] == 0.5 and width < 0.5
    assert epochs >= MIN_EPOCHS
    wider = 2 * width
    assert plan.train.budget_minutes * 60 * CPU_GFLOPS[3] / (8.0 * wider**2 * n_train) < MIN_EPOCHS
    assert any("GFLOP" in note for note in plan.notes)
    assert plan_classification(fp, has_gpu=True, cost=cost).model.kwargs["widen_factor"] == 0.5  # GPU: no budget


def _fingerprint_for_cost() -> dict:
    return {
        "task": "classification",
        "spatial_dims": 3,
        "modality": "CT",
        "n_cases": {"train": 1000, "val": 100, "test": 200, "all": 1300},
        "class_names": ["a", "b"],
        "class_counts": {"train": [500, 500], "val": [50, 50], "test": [100, 100]},
        "shape": {"median": [28, 28, 28], "min": [28, 28, 28], "max": [28, 28, 28]},
        "spacing_median": [1.0, 1.0, 1.0],
        "channels": 1,
        "intensity": {"mean": 0.0, "std": 1.0, "min": -1.0, "max": 1.0, "p00_5": -1.0, "p99_5": 1.0, "n_unique": 1000},
    }
