"""Train a class-conditional generator on a dataset's training images: ``medlens synth train``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Dataset, load_dataset
from medlens.generative.generator import Generator
from medlens.generative.images import grid_png, read_images, to_unit
from medlens.generative.spec import SAMPLES_FILE, WEIGHTS_FILE, GeneratorSpec, ModelKind, save_spec

log = logging.getLogger(__name__)
MAX_SIZE = 64  # larger images are trained at 64 px (a CPU-sized model)
GRID_PER_CLASS = 8


def generator_size(side: tuple[int, int]) -> tuple[int, int]:
    """The generated image size for training images of size ``side``: capped at 64 px, sides multiples of 4
    (the networks halve them twice)."""
    return (max(8, min(side[0], MAX_SIZE) // 4 * 4), max(8, min(side[1], MAX_SIZE) // 4 * 4))


def check_dataset(dataset: Dataset) -> None:
    """Raise unless the dataset is one a generator is made for: 2D single-label classification with a train split.

    Raises:
        InputError: naming the dataset and what it is instead.
    """
    from medlens.tasks.base import get_task

    if not get_task(dataset.spec.task).one_class_per_image(dataset):
        raise InputError(
            dataset.root, f"a {dataset.spec.task} dataset; synth trains on datasets with one class per image"
        )
    if dataset.spec.spatial_dims != 2:
        raise InputError(dataset.root, "a 3D dataset; synth makes 2D images only")
    if not dataset.split("train"):
        raise InputError(dataset.root, "no cases in the train split to learn from")


def train_generator(
    dataset_dir: str | Path,
    out: str | Path,
    *,
    model: ModelKind = "diffusion",
    budget_minutes: float | None = 30.0,
    max_steps: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    preview_steps: int = 50,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Generator:
    """Train a class-conditional generator on the dataset's ``train`` split into the folder ``out``.

    Args:
        dataset_dir: a 2D classification dataset (``medlens import``).
        out: the generator folder to create (``generator.yaml``, weights, ``samples.png``).
        model: ``diffusion`` (a small DDPM, sampled with DDIM) or ``gan`` (conditional DCGAN).
        budget_minutes: wall-clock training time; None: until ``max_steps``.
        max_steps: stop after this many optimisation steps (whichever of the two comes first).
        batch_size: images per step.
        seed: the random seed.
        preview_steps: DDIM steps of the images in ``samples.png`` (diffusion).
        overwrite: replace an existing generator folder that medlens made.
        progress: called as steps are trained.

    Example:
        >>> from medlens.generative.training import train_generator
        >>> train_generator("datasets/pneumonia", "generators/pneumonia", budget_minutes=10)  # doctest: +SKIP
    """
    if model not in ("diffusion", "gan"):
        raise ConfigError("--model", f"{model!r}: choose diffusion or gan")
    if budget_minutes is None and max_steps is None:
        raise ConfigError("--budget", "give a time budget or a number of steps, or training never ends")
    if budget_minutes is not None and budget_minutes <= 0:
        raise ConfigError("--budget", "must be positive")
    if batch_size < 1:
        raise ConfigError("batch_size", "at least 1")
    dataset = load_dataset(dataset_dir)
    check_dataset(dataset)
    cases = dataset.split("train")
    from medlens.data.segmentation_cases import read_channels

    first = read_channels(dataset.image_paths(cases[0]), 2, cases[0].case_id)
    size = generator_size(first.spatial_shape)  # type: ignore[arg-type]
    inputs = [("dataset", dataset.root)]
    with output_folder(out, kind="generator", overwrite=overwrite, inputs=inputs) as tmp:
        raw = read_images(dataset, cases, size, progress, "reading the training images")
        low, high = float(raw.min()), float(raw.max())
        if high <= low:
            raise InputError(dataset.root, f"every training image has the same value ({low}); nothing to learn")
        x = to_unit(raw, (low, high)) * 2 - 1  # (N, C, H, W) in [-1, 1]
        y = torch.tensor([dataset.class_index(c) for c in cases], dtype=torch.long)
        n_classes = dataset.num_classes
        budget = None if budget_minutes is None else budget_minutes * 60
        if model == "diffusion":
            from medlens.generative import diffusion as recipe
        else:
            from medlens.generative import gan as recipe  # type: ignore[no-redef]
        network = dict(recipe.DEFAULT_NETWORK)
        net, stats = recipe.train(
            x, y, n_classes, network, budget_seconds=budget, max_steps=max_steps, batch_size=batch_size,
            seed=seed, progress=progress,
        )  # fmt: skip
        spec = GeneratorSpec(
            model=model,
            classes=list(dataset.spec.classes),
            class_counts=[int((y == k).sum()) for k in range(n_classes)],
            channels=list(dataset.spec.channels),
            size=size,
            intensity=(low, high),
            network=network,
            training={**stats, "budget_minutes": budget_minutes, "max_steps": max_steps, "images": len(cases)},
            dataset={
                "path": str(dataset.root.resolve()),
                "name": dataset.spec.name,
                "modality": dataset.spec.modality,
            },
        )
        from safetensors.torch import save

        (tmp / WEIGHTS_FILE).write_bytes(save({k: v.detach().contiguous() for k, v in net.state_dict().items()}))
        save_spec(tmp, spec)
        generator = Generator(root=tmp, spec=spec, net=net)
        labels = [k for k in range(n_classes) for _ in range(GRID_PER_CLASS)]
        pictures = generator.generate(labels, steps=preview_steps, seed=seed)
        rows = [
            (name, pictures[labels.index(k) : labels.index(k) + GRID_PER_CLASS]) for k, name in enumerate(spec.classes)
        ]
        (tmp / SAMPLES_FILE).write_bytes(grid_png(rows, f"{model}, {stats['steps']} steps"))
    log.info("trained a %s generator for %d steps (%.0f s) into %s", model, stats["steps"], stats["seconds"], out)
    return Generator(root=Path(out), spec=spec, net=net)
