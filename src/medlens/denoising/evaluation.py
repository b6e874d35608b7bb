"""Measuring a denoiser (``medlens denoise evaluate``): PSNR and SSIM on a dataset's test split of the noisy input,
the autoencoder and classical filters, all on the same noisy images in one run, with 95% bootstrap intervals.

Each clean test image (scaled to [0, 1], :mod:`medlens.denoising.intensities`) gets the denoiser's own noise, seeded
per image, so every method sees exactly the same noisy pixels and the figures are reproducible. PSNR and SSIM are
scikit-image's with ``data_range=1`` (the clean image's range after scaling). Intervals are BCa over patients
(:func:`medlens.metrics.bootstrap.bca_entry`); the paired difference autoencoder minus non-local means carries its
own interval, which says whether the autoencoder is better on these images.

The latent compression ratio is the number of input values over the number of values at the network's bottleneck,
with the PSNR of the network on the *clean* input: for the ``autoencoder`` model everything passes the bottleneck,
so this is the quality of the compressed code; a U-Net's skip connections bypass it, which the JSON says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.core.errors import ConfigError, InputError
from medlens.core.outputs import output_folder, write_json
from medlens.core.progress import ProgressFn, report
from medlens.data.dataset import load_dataset
from medlens.denoising import classical
from medlens.denoising.intensities import ScaledImage, read_split
from medlens.denoising.model_folder import TrainedDenoiser, load_denoiser
from medlens.denoising.noise import add_noise
from medlens.metrics.bootstrap import bca_entry, bootstrap_method, group_index

log = logging.getLogger(__name__)

FIGURE = "denoise.png"
FIGURE_ROWS = 4


def evaluate_denoiser(
    denoiser_dir: str | Path,
    dataset_dir: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    bm3d: bool = False,
    limit: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``denoise.json`` and ``denoise.png`` into ``out`` and return the JSON's content.

    Args:
        denoiser_dir: a folder written by :func:`medlens.denoising.training.train_denoiser`.
        dataset_dir: the dataset whose ``split`` is measured (the same kind of images the denoiser was trained on).
        out: the folder to create.
        split: ``test`` (default), ``val``, ``train`` or ``all``.
        bm3d: also run BM3D (the ``bm3d`` package; 2D only, about a second per small image).
        limit: measure only the first ``limit`` images of the split.
        n_bootstrap: bootstrap resamples for the intervals.
        seed: seeds the noise and the resamples.
        overwrite: replace an existing output folder that medlens made.
        progress: called per stage and image.

    Raises:
        InputError: the dataset's images do not fit the denoiser (dimensions, channels), or cannot be read.
        ConfigError: BM3D asked for but not installed.

    Example:
        >>> result = evaluate_denoiser("ae", "datasets/pneumonia", "eval")  # doctest: +SKIP
        >>> result["methods"]["autoencoder"]["psnr"]["value"]  # doctest: +SKIP
        31.2
    """
    denoiser = load_denoiser(denoiser_dir)
    dataset = load_dataset(dataset_dir)
    info = denoiser.info
    if dataset.spec.spatial_dims != info.spatial_dims:
        raise InputError(dataset.root, f"a {dataset.spec.spatial_dims}D dataset; the denoiser is {info.spatial_dims}D")
    bm3d_version = classical.bm3d_available()
    if bm3d and bm3d_version is None:
        raise ConfigError("--bm3d", "the bm3d package is not installed (pip install bm3d)")
    guarded = [("dataset", Path(dataset_dir)), ("denoiser", Path(denoiser_dir))]
    with output_folder(out, kind="denoise-evaluation", overwrite=overwrite, inputs=guarded) as tmp:
        images = read_split(dataset, [split], progress, limit)
        wrong = [i for i in images if i.array.shape[0] != info.channels]
        if wrong:
            raise InputError(
                dataset.root, f"case {wrong[0].case_id} has {wrong[0].array.shape[0]} channel(s); the denoiser"
                f" takes {info.channels}"
            )  # fmt: skip
        clean = [i.array for i in images]
        noisy = _noisy(images, denoiser, seed)
        outputs: dict[str, list[np.ndarray]] = {"noisy": noisy}
        seconds: dict[str, float] = {}
        outputs["autoencoder"], seconds["autoencoder"] = _timed(denoiser.denoise_many, noisy)
        methods: dict[str, Callable[[np.ndarray], np.ndarray]] = dict(classical.METHODS)
        run_bm3d = bm3d and info.spatial_dims == 2
        if run_bm3d:
            methods["bm3d"] = classical.bm3d
        for name, method in methods.items():
            start = time.monotonic()
            outputs[name] = _each(method, noisy, name, progress)
            seconds[name] = time.monotonic() - start
        report(progress, "measuring", 0, None)
        groups = group_index([i.patient_id for i in images])
        scores = {name: _scores(clean, result) for name, result in outputs.items()}
        result: dict[str, Any] = {
            "methods": {
                name: {
                    metric: bca_entry(values, groups=groups, n_bootstrap=n_bootstrap, seed=seed)
                    for metric, values in per_metric.items()
                }
                for name, per_metric in scores.items()
            },
            "comparisons": {
                f"autoencoder_minus_{other}": {
                    metric: bca_entry(
                        scores["autoencoder"][metric] - scores[other][metric],
                        groups=groups,
                        n_bootstrap=n_bootstrap,
                        seed=seed,
                    )
                    for metric in ("psnr", "ssim")
                }
                for other in ("noisy", *methods)
            },
            "latent": _latent(denoiser, clean, groups, n_bootstrap, seed),
            "bm3d": _bm3d_note(bm3d, run_bm3d, bm3d_version, info.spatial_dims),
            "dataset": dataset.spec.name,
            "split": split,
            "cases": len(images),
            "bootstrap": bootstrap_method(groups, len(images)) | {"method": "BCa", "resamples": n_bootstrap},
            "noise": info.noise,
            "noise_seed": seed,
            "denoiser": {"model": info.model, "spatial_dims": info.spatial_dims, "training": info.training},
            "metrics": "skimage.metrics peak_signal_noise_ratio and structural_similarity, data_range=1 on images"
            " scaled to [0, 1] by their own range",
            "settings": {k: v for k, v in classical.SETTINGS.items() if k in methods},
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "figure": FIGURE,
        }
        _figure(tmp / FIGURE, clean, outputs, images)
        write_json(tmp / "denoise.json", result)
    return result


def _noisy(images: list[ScaledImage], denoiser: TrainedDenoiser, seed: int) -> list[np.ndarray]:
    """Each image with the denoiser's noise, seeded by ``seed`` and the image's place in the split."""
    spec = denoiser.info.noise_spec
    out = []
    for index, image in enumerate(images):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        out.append(add_noise(torch.as_tensor(image.array), spec, generator).numpy())
    return out


def _timed(fn: Callable[[list[np.ndarray]], list[np.ndarray]], items: list[np.ndarray]) -> tuple[Any, float]:
    start = time.monotonic()
    return fn(items), time.monotonic() - start


def _each(method: Callable[[np.ndarray], np.ndarray], items: list[np.ndarray], name: str, progress: ProgressFn | None):
    out = []
    for done, item in enumerate(items, start=1):
        out.append(method(item))
        report(progress, name, done, len(items))
    return out


def _scores(clean: list[np.ndarray], result: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per image PSNR and SSIM against the clean image."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [peak_signal_noise_ratio(c, r, data_range=1.0) for c, r in zip(clean, result, strict=True)]
    ssim = [structural_similarity(c, r, data_range=1.0, channel_axis=0) for c, r in zip(clean, result, strict=True)]
    # a perfect reconstruction has infinite PSNR: left out of the mean (NaN), never written as infinity
    return {"psnr": np.where(np.isfinite(psnr), psnr, np.nan), "ssim": np.asarray(ssim, dtype=np.float64)}


def _latent(
    denoiser: TrainedDenoiser, clean: list[np.ndarray], groups: np.ndarray | None, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """Input values over bottleneck values (of the first image's shape), and the network's PSNR on clean input."""
    shape = tuple(clean[0].shape[1:])
    size = denoiser.network.bottleneck_size(shape)
    reconstructed = denoiser.denoise_many(clean)
    entry: dict[str, Any] = {
        "model": denoiser.info.model,
        "input_values": int(clean[0].size),
        "bottleneck_values": size,
        "compression_ratio": float(clean[0].size / size),
        "reconstruction_psnr": bca_entry(
            _scores(clean, reconstructed)["psnr"], groups=groups, n_bootstrap=n_bootstrap, seed=seed
        ),
        "shape": list(clean[0].shape),
    }
    if denoiser.info.model == "unet":
        entry["note"] = (
            "the U-Net's skip connections carry full-resolution features past its lowest level, so this ratio is"
            " no compression and the reconstruction does not pass the bottleneck alone; train with"
            " --model autoencoder for a true bottleneck"
        )
    return entry


def _bm3d_note(asked: bool, run: bool, version: str | None, dims: int) -> dict[str, Any]:
    if run:
        return {"run": True, "package": f"bm3d {version}"}
    if version is None:
        return {"run": False, "reason": "the bm3d package is not installed"}
    if asked:
        return {"run": False, "reason": f"bm3d {version} is installed but runs on 2D images only here"}
    return {"run": False, "reason": f"bm3d {version} is installed; not asked (--bm3d): about 1 s per 28x28 image"}


def _figure(path: Path, clean: list[np.ndarray], outputs: dict[str, list[np.ndarray]], images: list[ScaledImage]):
    """A grid: one row per test image (the first few), clean / noisy / each method; volumes by their middle slice."""
    from medlens.core.outputs import atomic_file
    from medlens.reports.figures import figure, png

    columns = {"clean": clean, **outputs}
    rows = min(FIGURE_ROWS, len(clean))
    fig = figure(1.6 * len(columns), 1.7 * rows)
    for r in range(rows):
        for c, (name, arrays) in enumerate(columns.items()):
            axis = fig.add_subplot(rows, len(columns), r * len(columns) + c + 1)
            axis.imshow(_plane(arrays[r]), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(name, fontsize=8)
            if c == 0:
                axis.set_ylabel(images[r].case_id, fontsize=6)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        handle.write(png(fig))


def _plane(array: np.ndarray) -> np.ndarray:
    """The first channel as a 2D picture: a 2D image as it is, a volume's middle slice (rows first)."""
    if array.ndim == 3:
        return array[0]
    return array[0, :, :, array.shape[3] // 2].T
