"""``medlens synth train | sample | evaluate`` on a few real PneumoniaMNIST images with a few optimisation steps: a
sampled dataset loads and trains, classes are honoured, the evaluation writes every figure, outputs are not
overwritten unasked."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medlens.cli.main import main
from medlens.data.dataset import load_dataset

TINY_TRAIN = [
    "--set", "train.max_epochs=1",
    "--set", "train.budget_minutes=null",
    "--set", "train.batch_size=16",
    "--set", "model.kwargs.widen_factor=0.25",
]  # fmt: skip


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory, medmnist_subset: Callable[..., dict[str, np.ndarray]],
              write_npz: Callable[[Path, dict[str, np.ndarray]], Path]) -> Path:  # fmt: skip
    """A diffusion generator trained 3 steps on 40 real PneumoniaMNIST images (its dataset beside it, ``ds``)."""
    from medlens.generative.training import train_generator

    work = tmp_path_factory.mktemp("synth")
    npz = write_npz(work / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist", 40, 10, 10))
    assert main(["-q", "import", "medmnist", str(npz), "--out", str(work / "ds")]) == 0
    train_generator(work / "ds", work / "gen", max_steps=3, batch_size=16, preview_steps=2)
    return work / "gen"


def test_generator_folder_describes_itself(generator: Path) -> None:
    from medlens.generative.spec import load_spec

    spec = load_spec(generator)
    assert spec.model == "diffusion" and spec.classes == ["normal", "pneumonia"]
    assert spec.size == (28, 28) and spec.training["steps"] == 3
    assert sum(spec.class_counts) == 40 and min(spec.class_counts) > 0
    assert (generator / "samples.png").stat().st_size > 0


def test_sampled_dataset_is_marked_synthetic_and_trains(generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(["-q", "synth", "sample", str(generator), "--n", "12", "--steps", "2", "--out", str(out)]) == 0
    dataset = load_dataset(out)
    assert dataset.spec.source["synthetic"] == "true"
    assert len(dataset.cases) == 12 and all(c.extra["synthetic"] == "true" for c in dataset.cases)
    assert {c.split for c in dataset.cases} == {"train", "val"}
    counts = [sum(c.target == str(k) for c in dataset.cases) for k in range(2)]
    from medlens.generative.spec import load_spec

    trained_on = load_spec(generator).class_counts  # the training data's proportions, rounded either way
    assert all(abs(got - 12 * k / sum(trained_on)) < 1 for got, k in zip(counts, trained_on, strict=True))
    from PIL import Image

    assert Image.open(dataset.image_paths(dataset.cases[0])[0]).size == (28, 28)
    assert main(["-q", "train", str(out), "--out", str(tmp_path / "run"), *TINY_TRAIN]) == 0
    assert (tmp_path / "run" / "bundle" / "bundle.yaml").is_file()


def test_class_option_is_honoured(generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pneumonia_only"
    args = ["-q", "synth", "sample", str(generator), "--n", "5", "--steps", "2", "--class", "pneumonia"]
    assert main([*args, "--out", str(out)]) == 0
    assert [c.target for c in load_dataset(out).cases] == ["1"] * 5
    assert main([*args[:-1], "tumour", "-o", str(tmp_path / "other")]) == 1
    assert "'tumour' is not one of the generator's classes (normal, pneumonia)" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_seed_repeats_and_guidance_changes_the_samples(generator: Path, tmp_path: Path) -> None:
    from PIL import Image

    def pictures(out: Path) -> np.ndarray:
        dataset = load_dataset(out)
        return np.stack([np.asarray(Image.open(dataset.image_paths(c)[0])) for c in dataset.cases])

    args = ["-q", "synth", "sample", str(generator), "--n", "4", "--steps", "2", "--class", "normal"]
    for name, extra in {"a": ["--seed", "5"], "b": ["--seed", "5"], "c": ["--seed", "6"], "d": ["--seed", "5",
                        "--guidance", "3"]}.items():  # fmt: skip
        assert main([*args, *extra, "-o", str(tmp_path / name)]) == 0
    a, b, c, d = (pictures(tmp_path / name) for name in "abcd")
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)


def test_gan_trains_and_samples_each_class(generator: Path, tmp_path: Path) -> None:
    from medlens.generative.generator import load_generator
    from medlens.generative.training import train_generator

    train_generator(generator.parent / "ds", tmp_path / "gan", model="gan", max_steps=2, batch_size=8)
    gan = load_generator(tmp_path / "gan")
    images = gan.generate([0, 1, 1], seed=3)
    assert images.shape == (3, 1, 28, 28) and np.all((images >= 0) & (images <= 1))
    np.testing.assert_array_equal(images, gan.generate([0, 1, 1], seed=3))  # seeded
    assert not np.array_equal(images[1], images[2])


def test_refuses_to_overwrite_without_flag(generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    ds = generator.parent / "ds"
    commands = [
        ["synth", "train", str(ds), "--max-steps", "1", "--out", str(taken)],
        ["synth", "sample", str(generator), "--n", "2", "--steps", "1", "--out", str(taken)],
        ["synth", "evaluate", str(generator), "--real", str(ds), "--out", str(taken)],
    ]
    for command in commands:
        assert main(["-q", *command]) == 1
        assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    sampled = tmp_path / "sampled"
    assert main(["-q", "synth", "sample", str(generator), "--n", "2", "--steps", "1", "--out", str(sampled)]) == 0
    assert main(["-q", "synth", "sample", str(generator), "--n", "3", "--steps", "1", "--out", str(sampled)]) == 1
    again = ["-q", "synth", "sample", str(generator), "--n", "3", "--steps", "1", "--out", str(sampled), "--overwrite"]
    assert main(again) == 0
    assert len(load_dataset(sampled).cases) == 3


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def test_evaluate_writes_every_figure(generator: Path, pneumonia_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    args = ["-q", "synth", "evaluate", str(generator), "--real", str(pneumonia_run / "ds"), "--out", str(out),
            "--real-run", str(pneumonia_run / "run"), "--n", "16", "--steps", "2", "--bootstrap", "200",
            "--label-fraction", "0.2", "--guidance", "1.5", *TINY_TRAIN]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "synthesis.json").read_text())
    for key in ("trtr_auc", "tstr_auc", "real_fraction_auc", "real_fraction_synthetic_auc", "aug_gain_auc"):
        assert math.isfinite(result[key]["value"]), key
        lo, hi = result[key]["ci95"]
        assert lo <= result[key]["value"] <= hi, key
    for key in ("frechet_distance", "frechet_distance_held_out_real", "precision", "recall", "nn_distance_ratio"):
        assert math.isfinite(result[key]), key
    assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert result["aug_gain_auc"]["value"] == pytest.approx(
        result["real_fraction_synthetic_auc"]["value"] - result["real_fraction_auc"]["value"]
    )
    assert "penultimate layer" in result["features"]["what"]
    assert result["classifiers"]["trained_here"] == ["real_fraction", "real_fraction_synthetic", "tstr"]
    assert result["classifiers"]["cases"]["real_fraction"] == {"train": 16, "val": 8}  # 20% of 80/40, per class
    assert result["classifiers"]["cases"]["real_fraction_synthetic"]["train"] == 16 + 16
    assert result["classifiers"]["label_fraction"] == 0.2 and result["synthetic"]["guidance"] == 1.5
    assert all(math.isfinite(x) for x in _numbers(result))
    memorisation = result["memorisation"]
    assert memorisation["nn_distance_ratio"] == result["nn_distance_ratio"]
    assert all(c["distance"] < memorisation["near_copy_threshold"] for c in memorisation["near_copies"])
    assert (out / "samples.png").stat().st_size > 0
    assert not list(tmp_path.glob(".evaluation.*"))  # the working folder is gone


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_help_explains(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "--overwrite" in out and len(out.splitlines()) > 10


def test_budget_parsing() -> None:
    from medlens.cli.synth_commands import parse_minutes
    from medlens.core.errors import ConfigError

    assert [parse_minutes(t) for t in ("30m", "90s", "1h", "2.5")] == [30.0, 1.5, 60.0, 2.5]
    for bad in ("soon", "0m", "-1"):
        with pytest.raises(ConfigError):
            parse_minutes(bad)


@pytest.mark.parametrize(
    ("task", "classes", "accepted"),
    [("classification", ["a", "b"], True), ("multilabel", ["a", "b"], False), ("regression", ["mL"], False)],
)
def test_synth_takes_datasets_with_one_class_per_image(
    task: str, classes: list[str], accepted: bool, tmp_path: Path
) -> None:
    from medlens.core.errors import InputError
    from medlens.data.dataset import Case, DatasetSpec, write_dataset
    from medlens.generative.training import check_dataset

    spec = DatasetSpec(name="d", task=task, spatial_dims=2, channels=["gray"], classes=classes,
                       image_roots=[str(tmp_path)])  # fmt: skip
    label = "a" if task == "classification" else "a;b" if task == "multilabel" else "1.5"
    dataset = write_dataset(tmp_path / "d", spec, [Case("c0", "p0", [str(tmp_path / "x.png")], label, "train")])
    if accepted:
        check_dataset(dataset)
    else:
        with pytest.raises(InputError, match="one class per image"):
            check_dataset(dataset)
