"""Generated images as an ordinary medlens dataset, marked synthetic: ``medlens synth sample``.

The dataset is like any an importer writes (``dataset.yaml`` + ``manifest.csv`` + ``images/``), so ``medlens
plan``, ``train`` and ``evaluate`` take it unchanged. It says it is synthetic twice: ``source.synthetic: 'true'``
in ``dataset.yaml`` (with the generator it came from), and a ``synthetic`` column set to ``true`` on every row, so
a manifest merged with real cases still tells them apart. Cases are split into ``train`` and ``val`` per class
(15% val, seeded); there is no ``test`` split: test on real images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medlens.core.errors import ConfigError
from medlens.core.outputs import output_folder
from medlens.core.progress import ProgressFn, report
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, write_dataset
from medlens.generative.generator import Generator, load_generator
from medlens.generative.images import write_image

log = logging.getLogger(__name__)
VAL_FRACTION = 0.15
SYNTHETIC_COLUMN = "synthetic"


def sample_dataset(
    generator_dir: str | Path,
    out: str | Path,
    *,
    n: int = 2000,
    class_name: str | None = None,
    steps: int = 50,
    guidance: float = 1.0,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Generate ``n`` images into a new dataset folder ``out``.

    Args:
        generator_dir: a generator folder (``medlens synth train``).
        out: the dataset folder to create.
        n: how many images.
        class_name: only this class; default: every class, in the training data's proportions.
        steps: DDIM sampling steps (diffusion).
        guidance: classifier-free guidance scale (diffusion; 1: none).
        seed: the random seed (same seed, same images).
        overwrite: replace an existing dataset folder that medlens made.
        progress: called as images are made and written.

    Example:
        >>> from medlens.generative.sampling import sample_dataset
        >>> sample_dataset("generators/pneumonia", "datasets/pneumonia_synthetic", n=2000)  # doctest: +SKIP
    """
    if n < 1:
        raise ConfigError("--n", "at least 1 image")
    generator = load_generator(generator_dir)
    labels = [generator.class_index(class_name)] * n if class_name else generator.proportional_labels(n)
    with output_folder(out, kind="dataset", overwrite=overwrite, inputs=[("generator", generator.root)]) as tmp:
        pictures = generator.generate(labels, steps=steps, guidance=guidance, seed=seed, progress=progress)
        write_synthetic(tmp, generator, labels, pictures, seed=seed, progress=progress)
    log.info("wrote %d synthetic images into %s", n, out)
    return load_dataset(out)


def write_synthetic(
    folder: Path,
    generator: Generator,
    labels: Sequence[int],
    pictures: np.ndarray,
    *,
    seed: int = 0,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Write generated ``pictures`` (N, C, H, W) in [0, 1] of classes ``labels`` as a dataset into ``folder``."""
    spec = generator.spec
    (folder / "images").mkdir(parents=True, exist_ok=True)
    splits = _splits(labels, seed)
    cases = []
    for i, (label, picture) in enumerate(zip(labels, pictures, strict=True)):
        report(progress, "writing images", i, len(labels))
        case_id = f"synth_{i:05d}"
        file = write_image(folder / "images", case_id, picture, spec.intensity)
        cases.append(
            Case(
                case_id=case_id,
                patient_id=case_id,
                image=[f"images/{file}"],
                target=str(int(label)),
                split=splits[i],
                extra={SYNTHETIC_COLUMN: "true"},
            )
        )
    dataset_spec = DatasetSpec(
        name=name or f"{spec.dataset.get('name', 'dataset')}_synthetic",
        task="classification",
        spatial_dims=2,
        modality=spec.dataset.get("modality", "OT"),
        channels=list(spec.channels),
        classes=list(spec.classes),
        source={
            "format": "medlens-synth",
            "synthetic": "true",
            "generator": str(generator.root.resolve()),
            "model": spec.model,
            "seed": str(seed),
        },
    )
    return write_dataset(folder, dataset_spec, cases)


def _splits(labels: Sequence[int], seed: int) -> list[str]:
    """``train`` or ``val`` for each image: per class, a seeded 15% (at least one of two or more) to ``val``."""
    rng = np.random.default_rng(seed)
    out = ["train"] * len(labels)
    array = np.asarray(labels)
    for k in np.unique(array):
        members = np.flatnonzero(array == k)
        n_val = max(1, round(VAL_FRACTION * len(members))) if len(members) > 1 else 0
        for i in rng.permutation(members)[:n_val]:
            out[int(i)] = "val"
    return out
