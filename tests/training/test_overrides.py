"""``--set key=value`` overrides and plan.yaml round trips (medlens.training.overrides)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medlens.core.errors import ConfigError, InputError
from medlens.tasks.base import load_plan
from medlens.tasks.classification.config import ClassificationOptions, ClassificationPlan
from medlens.training.overrides import apply_overrides, save_plan
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan


@pytest.fixture()
def plan() -> ClassificationPlan:
    return ClassificationPlan(
        task="classification",
        spatial_dims=2,
        class_names=["normal", "pneumonia"],
        data=DataPlan(input_size=[28, 28], mean=120.5, std=60.25, clip=[0.0, 255.0]),
        augment=AugmentPlan(flip_axes=[0, 1], rotate_degrees=15.0),
        model=ModelPlan(name="monai_resnet18", kwargs={"widen_factor": 0.5, "stem_stride": 1}),
        optim=OptimPlan(),
        train=TrainPlan(budget_minutes=6.0),
        classification=ClassificationOptions(class_weights=[0.7, 1.8]),
        notes=["input size [28, 28]: the median image size", "why: unicode ü and: colons"],
    )


def test_nested_values_set_with_their_types(plan: ClassificationPlan) -> None:
    new = apply_overrides(
        plan,
        [
            "optim.lr=0.01",
            "train.batch_size=32",
            "augment.flip_axes=[1]",
            "train.budget_minutes=null",
            "classification.class_weights=",
            "data.input_size=[32, 32]",
            "optim.name=sgd",
            "model.pretrained=/tmp/weights v2.pt",
        ],
    )
    assert new.optim.lr == 0.01 and isinstance(new.optim.lr, float)
    assert new.train.batch_size == 32 and isinstance(new.train.batch_size, int)
    assert new.augment.flip_axes == [1]
    assert new.train.budget_minutes is None
    assert new.classification.class_weights is None
    assert new.data.input_size == [32, 32]
    assert new.optim.name == "sgd"
    assert new.model.pretrained == "/tmp/weights v2.pt"
    # the input plan is not changed; untouched fields are kept
    assert plan.optim.lr == OptimPlan().lr and plan.train.batch_size == TrainPlan().batch_size
    assert new.data.mean == plan.data.mean and new.notes == plan.notes


def test_later_override_wins(plan: ClassificationPlan) -> None:
    assert apply_overrides(plan, ["train.seed=1", "train.seed=5"]).train.seed == 5


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.bach_size=8", "train.bach_size"),
        ("trian.batch_size=8", "trian.batch_size"),
        ("learning_rate=0.1", "learning_rate"),
        ("optim.lr.value=0.1", "optim.lr.value"),
        ("model.name.x=resnet18", "model.name.x"),
        ("train.loss=focal", "train.loss"),  # plan version 2: read by nothing, so gone
        ("train.class_weights=[1, 2]", "train.class_weights"),  # moved to classification.class_weights
        ("augment.probability=0.5", "augment.probability"),  # split into spatial_ and intensity_probability
    ],
)
def test_unknown_key_names_the_key(plan: ClassificationPlan, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(plan, [override])
    assert info.value.key == key


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=abc", "train.batch_size"),
        ("train.batch_size=3.5", "train.batch_size"),
        ("optim.name=adam", "optim.name"),
        ("data.input_size=28", "data.input_size"),
        ("classification.label_smoothing=1.5", "classification.label_smoothing"),
        ("train.batch_size=0", "train.batch_size"),
        ("optim.lr=.nan", "optim.lr"),
        ("train.monitor_mode=up", "train.monitor_mode"),
        ("augment=3", "augment"),
    ],
)
def test_wrong_type_names_the_key(plan: ClassificationPlan, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(plan, [override])
    assert info.value.key == key
    assert "--set" in str(info.value)


def test_missing_equals_sign(plan: ClassificationPlan) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(plan, ["train.batch_size"])


def test_kwargs_accept_sub_keys(plan: ClassificationPlan) -> None:
    new = apply_overrides(plan, ["model.kwargs.widen_factor=0.25", "model.kwargs.stem_pool=true"])
    assert new.model.kwargs == {"widen_factor": 0.25, "stem_stride": 1, "stem_pool": True}
    deeper = apply_overrides(plan, ["model.kwargs.block.depth=3"])
    assert deeper.model.kwargs["block"] == {"depth": 3}
    with pytest.raises(ConfigError, match=r"model\.kwargs\.widen_factor\.x"):
        apply_overrides(plan, ["model.kwargs.widen_factor.x=1"])  # 0.5 has no sub-keys


def test_save_load_round_trip(plan: ClassificationPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    save_plan(plan, path)
    assert load_plan(path) == plan
    assert path.read_text().startswith("#")  # the header comment says how to edit
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]


def test_edited_plan_is_validated(plan: ClassificationPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    save_plan(plan, path)
    raw = yaml.safe_load(path.read_text())
    raw["train"]["bach_size"] = 8
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    assert info.value.key == "train.bach_size"
    assert str(path) in str(info.value)
    raw["train"].pop("bach_size")
    raw["optim"]["lr"] = "fast"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"^optim\.lr"):
        load_plan(path)


def test_missing_or_broken_plan_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no plan\.yaml"):
        load_plan(tmp_path / "plan.yaml")
    (tmp_path / "plan.yaml").write_text("train: {batch_size: [8\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_plan(tmp_path / "plan.yaml")
    (tmp_path / "plan.yaml").write_text("")
    with pytest.raises(InputError, match="a plan is a mapping"):
        load_plan(tmp_path / "plan.yaml")


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.normalization=minmax", "data.clip=null"],  # a min-max range must be given
        ["data.clip=[255, 0]"],
        ["data.clip=[0, 100, 255]"],
    ],
)
def test_inconsistent_intensity_range(plan: ClassificationPlan, overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match="clip") as info:
        apply_overrides(plan, overrides)
    assert info.value.key == "data"


def test_minmax_with_a_range(plan: ClassificationPlan) -> None:
    new = apply_overrides(plan, ["data.normalization=minmax", "data.clip=[-1000, 400]"])
    assert (new.data.normalization, new.data.clip) == ("minmax", [-1000.0, 400.0])


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("augment.flip_axes=[0, 2]", "flip_axes [2]"),
        ("augment.flip_axes=[-1]", "flip_axes [-1]"),
        ("data.input_size=[28, 28, 28]", "input_size"),
        ("spatial_dims=3", "input_size"),
    ],
)
def test_axes_must_fit_the_dimensionality(plan: ClassificationPlan, override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        apply_overrides(plan, [override])


def test_switching_to_3d_with_matching_sizes(plan: ClassificationPlan) -> None:
    new = apply_overrides(plan, ["spatial_dims=3", "data.input_size=[32, 32, 32]", "augment.flip_axes=[2]"])
    assert (new.spatial_dims, new.augment.flip_axes) == (3, [2])
