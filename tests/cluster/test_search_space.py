"""The search space of ``medlens tune``: written forms, errors naming the item, and the defaults taken from a plan."""

from __future__ import annotations

import pytest

from medlens.cluster.search_space import default_space, overrides, parse_dimension, resolve_space
from medlens.core.errors import ConfigError
from medlens.tasks.classification.config import ClassificationOptions, ClassificationPlan
from medlens.training.overrides import apply_overrides
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan


def _plan() -> ClassificationPlan:
    return ClassificationPlan(
        task="classification", spatial_dims=2, class_names=["normal", "pneumonia"],
        data=DataPlan(input_size=[28, 28]), augment=AugmentPlan(rotate_degrees=15.0, translate=0.1),
        model=ModelPlan(name="monai_resnet18", kwargs={"widen_factor": 0.5}), optim=OptimPlan(lr=2e-3),
        train=TrainPlan(), classification=ClassificationOptions(class_weights=[1.5, 0.75]),
    )  # fmt: skip


def test_dimensions_are_read_as_data() -> None:
    assert parse_dimension("optim.lr=loguniform(1e-4, 1e-2)").values == (1e-4, 1e-2)
    assert parse_dimension("train.batch_size=randint(8, 65)").values == (8, 65)
    choice = parse_dimension("classification.class_weights=choice([1.0, 0.5], null)")
    assert choice.values == ([1.0, 0.5], None)
    assert choice.text() == "classification.class_weights=choice([1.0, 0.5], null)"
    for bad, why in [
        ("optim.lr", "KEY=KIND"),
        ("optim.lr=normal(0, 1)", "not a distribution"),
        ("optim.lr=loguniform(0, 1)", "low > 0"),
        ("optim.lr=uniform(2, 1)", "low < high"),
        ("optim.lr=uniform(__import__('os'))", "two numbers"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_dimension(bad)


def test_default_space_follows_the_plan_and_every_value_is_a_valid_override() -> None:
    plan = _plan()
    space = {d.key: d for d in default_space(plan)}
    assert space["optim.lr"].values == pytest.approx((2e-4, 6e-3))
    assert space["model.kwargs.widen_factor"].values == (0.25, 0.5, 1.0)
    assert space["augment.rotate_degrees"].values == (0.0, 30.0)
    assert space["classification.class_weights"].values == ([1.5, 0.75], None)
    drawn = {"optim.lr": 1e-3, "model.kwargs.widen_factor": 0.25, "classification.class_weights": None}
    tuned = apply_overrides(plan, overrides(drawn))
    assert tuned.optim.lr == 1e-3 and tuned.model.kwargs["widen_factor"] == 0.25
    assert tuned.classification.class_weights is None
    given = resolve_space(plan, ["optim.lr=loguniform(1e-5, 1e-4)"])
    assert next(d for d in given if d.key == "optim.lr").values == (1e-5, 1e-4)
    assert [d.key for d in resolve_space(plan, ["optim.lr=uniform(0.1, 0.2)"], defaults=False)] == ["optim.lr"]
    with pytest.raises(ConfigError, match="nothing to search"):
        resolve_space(plan, [], defaults=False)
