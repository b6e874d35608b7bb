"""What a generator's images are worth: ``medlens synth evaluate`` writes ``DIR/synthesis.json``.

Four classifiers are trained with one plan (the real dataset's, every override and the budget baked in) by the
ordinary training workflow, and tested on the real ``test`` split:

- ``trtr``: train on the real training data (or ``real_run``, a run already trained on it);
- ``tstr``: train on synthetic images only (their own ``train``/``val`` split);
- ``real_fraction``: train on a stratified, seeded ``label_fraction`` of the real ``train`` and ``val`` cases;
- ``real_fraction_synthetic``: the same real cases plus every synthetic image in ``train`` (validation stays real).

AUCs get 95% intervals from one set of paired bootstrap resamples of the test cases (patients when they share
them), so the differences (``aug_gain_auc``: the last minus the third; ``tstr_minus_trtr_auc``) get intervals too.

Image quality is measured in the feature space of the ``trtr`` classifier (its penultimate layer; no downloaded
Inception network): Fréchet distance and k-NN precision/recall (k = 3) of the synthetic images against a sample
of the real training images, beside the same for the held-out real test images, which says what "as good as
real" looks like. Memorisation is measured in pixels: ``nn_distance_ratio`` is the median distance of a synthetic
image to its nearest training image over the same for a held-out real image; near-copies (closer to a training
image than all but 1% of held-out images are) are listed.

Datasets and runs are made in a temporary folder beside ``DIR`` and removed afterwards; ``DIR`` receives
``synthesis.json`` and ``samples.png`` (synthetic and real images per class, and the closest near-copies).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import check_output_folder, output_folder, write_json
from medlens.core.progress import ProgressFn
from medlens.data.dataset import Case, Dataset, DatasetSpec, load_dataset, write_dataset
from medlens.generative.generator import Generator, load_generator
from medlens.generative.sampling import SYNTHETIC_COLUMN, write_synthetic
from medlens.generative.training import check_dataset

log = logging.getLogger(__name__)
K_NEIGHBOURS = 3
MAX_REFERENCE = 2000  # real training images the feature statistics are computed on
NEAR_COPY_PERCENTILE = 1.0
LISTED_NEAR_COPIES = 20
RUNS = ("trtr", "tstr", "real_fraction", "real_fraction_synthetic")


def evaluate_synthesis(
    generator_dir: str | Path,
    real_dir: str | Path,
    out: str | Path,
    *,
    n: int = 2000,
    label_fraction: float = 0.1,
    budget_minutes: float | None = None,
    overrides: list[str] | None = None,
    real_run: str | Path | None = None,
    steps: int = 50,
    guidance: float = 1.0,
    seed: int = 0,
    n_bootstrap: int = 1000,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Measure a generator against its real dataset; write ``synthesis.json`` and ``samples.png`` into ``out``.

    Args:
        generator_dir: a generator folder (``medlens synth train``).
        real_dir: the real dataset, with ``train``, ``val`` and ``test`` splits and the generator's classes.
        out: the folder to create.
        n: synthetic images to generate (in the training data's class proportions).
        label_fraction: share of real ``train`` and ``val`` labels for the augmentation comparison.
        budget_minutes: training budget of each classifier (default: the plan's).
        overrides: ``key=value`` plan overrides for every classifier.
        real_run: a run already trained on the real dataset, used as the ``trtr`` classifier and feature extractor;
            its plan (with ``overrides`` and ``budget_minutes``) trains the others.
        steps: DDIM sampling steps (diffusion).
        guidance: classifier-free guidance scale (diffusion; 1: none).
        seed: the random seed (sampling, the label subset, the bootstrap).
        n_bootstrap: bootstrap resamples for the 95% intervals.
        overwrite: replace an existing output folder that medlens made.
        progress: called as images are made and classifiers trained.

    Example:
        >>> from medlens.generative.evaluation import evaluate_synthesis
        >>> result = evaluate_synthesis("generators/pneumonia", "datasets/pneumonia", "evals/synth")  # doctest: +SKIP
        >>> result["tstr_auc"]  # doctest: +SKIP
        {'value': 0.91, 'ci95': [0.89, 0.93]}
    """
    if n < 2:
        raise ConfigError("--n", "at least 2 synthetic images (a train and a val image)")
    if not 0 < label_fraction < 1:
        raise ConfigError("--label-fraction", "must lie between 0 and 1")
    if n_bootstrap < 1:
        raise ConfigError("--bootstrap", "at least 1 resample")
    generator = load_generator(generator_dir)
    real = load_dataset(real_dir)
    _check_real(real, generator)
    out = Path(out)
    inputs: list[tuple[str, str | Path]] = [("generator", generator.root), ("dataset", real.root)]
    if real_run is not None:
        inputs.append(("run folder", real_run))
    check_output_folder(out, overwrite=overwrite, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the intermediate datasets and runs: a folder of this call's own, removed with everything in it at the end
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".work", dir=out.parent) as work:
        result, figure = _evaluate(
            generator, real, Path(work), n=n, label_fraction=label_fraction, budget_minutes=budget_minutes,
            overrides=overrides or [], real_run=Path(real_run) if real_run else None, steps=steps,
            guidance=guidance, seed=seed, n_bootstrap=n_bootstrap, progress=progress,
        )  # fmt: skip
        with output_folder(out, kind="synthesis", overwrite=overwrite, inputs=inputs) as tmp:
            write_json(tmp / "synthesis.json", result)
            (tmp / "samples.png").write_bytes(figure)
    return result


def _check_real(real: Dataset, generator: Generator) -> None:
    check_dataset(real)  # what a generator is made for: 2D, one class per image, a train split
    if real.spec.classes != generator.spec.classes:
        raise InputError(real.root, f"classes {real.spec.classes}; the generator makes {generator.spec.classes}")
    for split in ("train", "val", "test"):
        if not real.split(split):
            raise InputError(real.root, f"no cases in the {split} split (train, val and test are all needed)")


def _evaluate(
    generator: Generator,
    real: Dataset,
    work: Path,
    *,
    n: int,
    label_fraction: float,
    budget_minutes: float | None,
    overrides: list[str],
    real_run: Path | None,
    steps: int,
    guidance: float,
    seed: int,
    n_bootstrap: int,
    progress: ProgressFn | None,
) -> tuple[dict[str, Any], bytes]:
    from medlens.tasks.base import load_bundle
    from medlens.training.overrides import apply_overrides, save_plan
    from medlens.workflows.planning import resolve_plan
    from medlens.workflows.training import train

    labels = generator.proportional_labels(n)
    pictures = generator.generate(labels, steps=steps, guidance=guidance, seed=seed, progress=progress)
    synthetic = write_synthetic(work / "synthetic", generator, labels, pictures, seed=seed, progress=progress)

    extra = [*overrides, *([f"train.budget_minutes={budget_minutes}"] if budget_minutes is not None else [])]
    plan = apply_overrides(load_bundle(real_run).plan, extra) if real_run else resolve_plan(real, extra)
    subset = stratified_subset(real, label_fraction, seed)
    datasets = {
        "tstr": synthetic,
        "real_fraction": _derived(work / "real_fraction", real, subset, []),
        "real_fraction_synthetic": _derived(work / "real_fraction_synthetic", real, subset, [synthetic]),
    }
    if real_run is None:
        datasets["trtr"] = _derived(work / "real", real, real.split("train") + real.split("val"), [])
    runs: dict[str, Path] = {"trtr": real_run} if real_run else {}
    for name, dataset in datasets.items():
        save_plan(plan, dataset.root / "plan.yaml")
        log.info("training the %s classifier on %d cases", name, len(dataset.split("train")))
        runs[name] = work / "runs" / name
        train(dataset.root, runs[name], progress=progress)

    from medlens.training.images import case_images

    test = real.split("test")
    test_images = list(case_images(real, test))
    y = np.array([real.class_index(c) for c in test])
    bundles = {name: load_bundle(runs[name]) for name in RUNS}
    scores = {name: _probabilities(bundle, test_images) for name, bundle in bundles.items()}
    result: dict[str, Any] = {
        "generator": {
            "path": str(generator.root.resolve()),
            "model": generator.spec.model,
            "training": generator.spec.training,
        },
        "real_dataset": {"path": str(real.root.resolve()), "name": real.spec.name},
        "synthetic": {
            "n": n,
            "per_class": {c: labels.count(k) for k, c in enumerate(generator.spec.classes)},
            "sampling_steps": steps if generator.spec.model == "diffusion" else None,
            "guidance": guidance if generator.spec.model == "diffusion" else None,
            "seed": seed,
        },
        "classifiers": {
            "model": plan.model.name,
            "model_kwargs": plan.model.kwargs,
            "budget_minutes": plan.train.budget_minutes,
            "max_epochs": plan.train.max_epochs,
            "overrides": extra,
            "label_fraction": label_fraction,
            "trained_here": sorted(datasets),
            "cases": {name: {s: len(d.split(s)) for s in ("train", "val")} for name, d in datasets.items()},
        },
    }
    result.update(_aucs(scores, y, test, n_bootstrap, seed))
    result.update(_quality(bundles["trtr"], real, synthetic, test_images, seed))
    memorisation, copies = _memorisation(generator, real, synthetic, test)
    result["nn_distance_ratio"] = memorisation["nn_distance_ratio"]
    result["memorisation"] = memorisation
    figure = _figure(generator, real, synthetic, labels, copies)
    return result, figure


def stratified_subset(real: Dataset, fraction: float, seed: int) -> list[Case]:
    """A seeded share of the ``train`` and of the ``val`` cases, class by class (at least one per class present).

    A small stand-in for importers' label fractions, kept here so this measurement does not depend on them.
    """
    rng = np.random.default_rng(seed)
    chosen: list[Case] = []
    for split in ("train", "val"):
        cases = real.split(split)
        classes = np.array([real.class_index(c) for c in cases])
        for k in np.unique(classes):
            members = np.flatnonzero(classes == k)
            keep = max(1, round(fraction * len(members)))
            chosen += [cases[int(i)] for i in sorted(rng.permutation(members)[:keep])]
    return chosen


def _derived(folder: Path, real: Dataset, cases: Sequence[Case], synthetic: Sequence[Dataset]) -> Dataset:
    """A dataset of real ``cases`` (their images left where they are) plus every synthetic case as ``train``."""
    from dataclasses import replace

    base = Path(os.path.abspath(real.root))
    roots = [str(base), *(os.path.abspath(base / r) for r in real.spec.image_roots)]
    rows = [
        replace(
            c,
            image=[os.path.abspath(p) for p in real.image_paths(c)],
            extra={**c.extra, SYNTHETIC_COLUMN: "false"} if synthetic else dict(c.extra),
        )
        for c in cases
    ]
    for other in synthetic:
        roots.append(os.path.abspath(other.root))
        rows += [
            replace(c, image=[os.path.abspath(p) for p in other.image_paths(c)], split="train") for c in other.cases
        ]
    spec = DatasetSpec(
        name=folder.name,
        task=real.spec.task,
        spatial_dims=real.spec.spatial_dims,
        modality=real.spec.modality,
        channels=list(real.spec.channels),
        classes=list(real.spec.classes),
        source={"format": "medlens-synth-evaluation", "real": str(base)},
        image_roots=roots,
    )
    folder.mkdir(parents=True)
    return write_dataset(folder, spec, rows)


def _probabilities(bundle: Any, images: Sequence[Any]) -> np.ndarray:
    """Each image's class probabilities (N, K) in the bundle's class order."""
    predictions = list(bundle.predict_many(images))
    return np.array([[p.probabilities[c] for c in bundle.class_names] for p in predictions], dtype=np.float64)


def _auc(probabilities: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of case weights: binary on the second class, else the mean of one-vs-rest AUCs."""
    from medlens.metrics.bootstrap import weighted_roc_auc

    if probabilities.shape[1] == 2:
        return weighted_roc_auc(probabilities[:, 1], (y == 1).astype(np.int64), weights)
    per_class = [
        weighted_roc_auc(probabilities[:, k], (y == k).astype(np.int64), weights) for k in range(probabilities.shape[1])
    ]
    return np.nanmean(np.stack(per_class), axis=0)


def _aucs(
    scores: dict[str, np.ndarray], y: np.ndarray, test: Sequence[Case], n_bootstrap: int, seed: int
) -> dict[str, Any]:
    from medlens.metrics.bootstrap import bootstrap_method, group_index, interval_entry, resample_weights

    groups = group_index([c.patient_id for c in test])
    point = {name: float(_auc(s, y, np.ones((1, len(y))))[0]) for name, s in scores.items()}
    samples: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    for block in resample_weights(len(y), n_bootstrap, seed, groups):  # the same resamples for every model
        for name, s in scores.items():
            samples[name].append(_auc(s, y, block))
    boot = {name: np.concatenate(v) for name, v in samples.items()}

    def entry(name: str) -> dict[str, Any]:
        return interval_entry(point[name], boot[name])

    def difference(a: str, b: str) -> dict[str, Any]:
        value = interval_entry(point[a] - point[b], boot[a] - boot[b])
        lo, hi = value["ci95"]
        value["excludes_zero"] = bool(lo is not None and hi is not None and (lo > 0 or hi < 0))
        return value

    return {
        "test": {"split": "test", "cases": len(y), "n_bootstrap": n_bootstrap, **bootstrap_method(groups, len(y))},
        "trtr_auc": entry("trtr"),
        "tstr_auc": entry("tstr"),
        "tstr_minus_trtr_auc": difference("tstr", "trtr"),
        "real_fraction_auc": entry("real_fraction"),
        "real_fraction_synthetic_auc": entry("real_fraction_synthetic"),
        "aug_gain_auc": difference("real_fraction_synthetic", "real_fraction"),
    }


def _quality(bundle: Any, real: Dataset, synthetic: Dataset, test_images: Sequence[Any], seed: int) -> dict[str, Any]:
    from medlens.generative.features import feature_description, penultimate_features
    from medlens.generative.quality import frechet_distance, precision_recall
    from medlens.training.images import case_images

    train = real.split("train")
    rng = np.random.default_rng(seed)
    reference_cases = [train[int(i)] for i in sorted(rng.permutation(len(train))[:MAX_REFERENCE])]
    reference = penultimate_features(bundle, case_images(real, reference_cases))
    generated = penultimate_features(bundle, case_images(synthetic, synthetic.cases))
    held_out = penultimate_features(bundle, test_images)
    p_syn, r_syn = precision_recall(reference, generated, K_NEIGHBOURS)
    p_real, r_real = precision_recall(reference, held_out, K_NEIGHBOURS)
    return {
        "features": {
            "what": feature_description(bundle),
            "dimensions": int(reference.shape[1]),
            "reference": f"{len(reference)} real train images (seeded sample)",
            "held_out_real": f"{len(held_out)} real test images: what the same figures are for real images",
        },
        "frechet_distance": frechet_distance(generated, reference),
        "frechet_distance_held_out_real": frechet_distance(held_out, reference),
        "precision": p_syn,
        "recall": r_syn,
        "precision_held_out_real": p_real,
        "recall_held_out_real": r_real,
        "k_neighbours": K_NEIGHBOURS,
    }


def _memorisation(
    generator: Generator, real: Dataset, synthetic: Dataset, test: Sequence[Case]
) -> tuple[dict[str, Any], list[tuple[int, int, float]]]:
    from medlens.generative.images import read_images, to_unit
    from medlens.generative.quality import nearest

    size, intensity = generator.spec.size, generator.spec.intensity
    train = real.split("train")

    def pixels(dataset: Dataset, cases: Sequence[Case], stage: str) -> np.ndarray:
        return to_unit(read_images(dataset, cases, size, stage=stage), intensity).flatten(1).numpy()  # (N, C*H*W)

    train_px = pixels(real, train, "reading training images")
    syn_d, syn_i = nearest(pixels(synthetic, synthetic.cases, "reading synthetic images"), train_px)
    held_d, _ = nearest(pixels(real, test, "reading test images"), train_px)
    threshold = float(np.percentile(held_d, NEAR_COPY_PERCENTILE))
    flagged = np.flatnonzero(syn_d < threshold)
    order = flagged[np.argsort(syn_d[flagged], kind="stable")]
    median_syn, median_held = float(np.median(syn_d)), float(np.median(held_d))
    copies = [
        {
            "synthetic_index": int(i),
            "synthetic_image": synthetic.cases[int(i)].image[0],
            "class": real.spec.classes[int(synthetic.cases[int(i)].target)],
            "training_case": train[int(syn_i[i])].case_id,
            "training_image": str(real.image_paths(train[int(syn_i[i])])[0]),
            "distance": round(float(syn_d[i]), 5),
        }
        for i in order[:LISTED_NEAR_COPIES]
    ]
    closest = np.argsort(syn_d, kind="stable")[:8]
    record = {
        "space": f"pixels at {size[0]}x{size[1]}, intensities scaled to [0, 1]; Euclidean distance",
        "nn_distance_ratio": median_syn / median_held if median_held > 0 else None,
        "median_nn_distance_synthetic": median_syn,
        "median_nn_distance_held_out_real": median_held,
        "held_out_real": f"{len(test)} real test images",
        "near_copy_threshold": threshold,
        "near_copy_rule": f"closer to a training image than {100 - NEAR_COPY_PERCENTILE:g}% of held-out real images are"
        f" ({NEAR_COPY_PERCENTILE:g}% of synthetic images would be flagged if they were like held-out real ones)",
        "near_copy_fraction": float(len(flagged) / max(1, len(syn_d))),
        "near_copies": copies,
        "near_copies_listed": f"the {min(len(flagged), LISTED_NEAR_COPIES)} closest of {len(flagged)}",
    }
    return record, [(int(i), int(syn_i[i]), float(syn_d[i])) for i in closest]


def _figure(
    generator: Generator,
    real: Dataset,
    synthetic: Dataset,
    labels: Sequence[int],
    closest: Sequence[tuple[int, int, float]],
) -> bytes:
    from medlens.generative.images import grid_png, read_images, to_unit

    size, intensity = generator.spec.size, generator.spec.intensity
    rows = []
    train = real.split("train")
    for k, name in enumerate(generator.spec.classes):
        syn_cases = [c for c, label in zip(synthetic.cases, labels, strict=True) if label == k][:8]
        real_cases = [c for c in train if real.class_index(c) == k][:8]
        rows.append((f"synthetic\n{name}", to_unit(read_images(synthetic, syn_cases, size), intensity).numpy()))
        rows.append((f"real\n{name}", to_unit(read_images(real, real_cases, size), intensity).numpy()))
    if closest:
        syn_cases = [synthetic.cases[i] for i, _, _ in closest]
        train_cases = [train[j] for _, j, _ in closest]
        rows.append(("closest\nsynthetic", to_unit(read_images(synthetic, syn_cases, size), intensity).numpy()))
        rows.append(("nearest\ntraining", to_unit(read_images(real, train_cases, size), intensity).numpy()))
    return grid_png(rows, f"{generator.spec.model} generator: synthetic and real images per class")
