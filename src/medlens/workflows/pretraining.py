"""Self-supervised pretraining without labels: ``medlens.pretrain(INPUTS, OUT)``.

Inputs are any mix of dataset folders (their training and unlabeled images; validation and test are left alone)
and folders of images (PNG, JPEG, TIFF, DICOM, NIfTI, searched recursively; any labels are ignored), all 2D or all
3D. The network and the input preprocessing are the task's: a dataset's ``plan.yaml`` when the first dataset has
one, otherwise the whole-image planning rules applied to the fingerprint of all the images, so the encoder's
tensors load into the task's network (``--set model.init=OUT``).

Output folder::

    OUT/
      encoder.safetensors   # the encoder's tensors, named as in the task's network (its head left out)
      pretrain.yaml         # method, backbone, spatial dims, channels, input size, intensity, images, epochs, seconds
      loss.png              # the training loss per step
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medlens.core.errors import InputError
from medlens.core.outputs import atomic_file, output_folder
from medlens.core.progress import ProgressFn
from medlens.data.dataset import UNLABELED, Case, Dataset, DatasetSpec, load_dataset, write_dataset
from medlens.training.plan import DataPlan, ModelPlan

log = logging.getLogger(__name__)
POOLS = ("train", UNLABELED, "")  # the splits of a dataset that pretraining reads: never validation or test


def pretraining_images(inputs: list[Path]) -> tuple[list[list[Path]], int, list[str], dict[str, int]]:
    """Every image the inputs hold for pretraining: (paths per image, spatial dims, channel names, count per input).

    Raises:
        InputError: an input that is neither a dataset nor a folder or file of images, one without images, or
            inputs of different spatial dimensions.
    """
    from medlens.data.sources import describe_images, is_image_file

    images: list[list[Path]] = []
    dims: dict[Path, int] = {}
    channels: list[str] | None = None
    counts: dict[str, int] = {}
    for source in inputs:
        if (source / "dataset.yaml").is_file():
            dataset = load_dataset(source)
            found = [dataset.image_paths(c) for c in dataset.cases if c.split in POOLS]
            dims[source] = dataset.spec.spatial_dims
            channels = channels or dataset.spec.channels
        elif source.is_dir() or source.is_file():
            files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
            found = [[p] for p in files if is_image_file(p)]
            if found:
                d, names, _ = describe_images([p[0] for p in found[:: max(1, len(found) // 10)]])
                dims[source] = d
                channels = channels or names
        else:
            raise InputError(source, "no such dataset, folder or image")
        if not found:
            raise InputError(
                source, "holds no image to pretrain on (a dataset's train/unlabeled split, or image files)"
            )
        counts[str(source)] = len(found)
        images.extend(found)
    if len(set(dims.values())) > 1:
        listed = ", ".join(f"{p} {d}D" for p, d in dims.items())
        raise InputError(inputs[0], f"inputs mix 2D and 3D images ({listed}); pretrain on one kind at a time")
    return images, next(iter(dims.values())), channels or ["gray"], counts


def pretraining_plan(inputs: list[Path], pool: Dataset) -> tuple[DataPlan, ModelPlan, str]:
    """The input preprocessing and network: the first dataset's ``plan.yaml`` if it has one, else the whole-image
    planning rules on the fingerprint of ``pool`` (every image). Returns (data, model, where they came from)."""
    import torch

    from medlens.data.fingerprint import compute_fingerprint
    from medlens.tasks.base import load_plan
    from medlens.training.image_planning import cost_counter, plan_image_model

    for source in inputs:
        if (source / "plan.yaml").is_file():
            plan = load_plan(source / "plan.yaml")
            return plan.data, plan.model, str(source / "plan.yaml")
    fingerprint = compute_fingerprint(pool)
    sections = plan_image_model(
        fingerprint,
        has_gpu=torch.cuda.is_available(),
        cost=cost_counter(fingerprint, outputs=2),
        monitor="val_auc",
        monitor_mode="max",
    )
    return sections.data, sections.model, "the whole-image planning rules on the fingerprint of the pretraining images"


def pretrain(
    inputs: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    method: str = "simclr",
    backbone: str | None = None,
    budget_minutes: float = 30.0,
    max_epochs: int = 200,
    batch_size: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Pretrain the task's encoder on the inputs' images without labels and write ``out`` (see the module docstring).

    Args:
        inputs: dataset folders and folders (or files) of images.
        out: the pretrain folder to create.
        method: ``simclr``, ``byol``, ``dino`` or ``mae`` (a masked autoencoder; ViT backbones only: ``vit_tiny``,
            ``vit_small``, ``monai_vit``, ``unetr``).
        backbone: a registered image network (``medlens models``) instead of the plan's.
        budget_minutes: wall-clock time of the training loop.
        max_epochs: stop earlier after this many passes over the images.
        batch_size: images per step, each seen in two views (default 128 in 2D, 64 in 3D).
        lr: peak learning rate (AdamW, cosine to zero at the budget's end).
        seed: seed of the views, the batches and the heads.
        overwrite: replace an existing ``out`` that medlens made.
        progress: called as ``progress(stage, done, total)`` while images load and the encoder trains.

    Returns:
        The contents of ``pretrain.yaml``.

    Example:
        >>> import medlens
        >>> medlens.pretrain(["datasets/pneumonia"], "pre/pneumonia", budget_minutes=5)  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    from medlens.data.sources import common_folders
    from medlens.training.images import load_in_memory, normalize
    from medlens.training.pretraining import build_encoder, pretrain_encoder

    sources = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    if not sources:
        raise InputError(Path(out), "no input to pretrain on")
    images, dims, channel_names, counts = pretraining_images(sources)
    with output_folder(out, kind="pretrain", overwrite=overwrite, inputs=[("input", p) for p in sources]) as tmp:
        with tempfile.TemporaryDirectory(prefix="medlens-pretrain-") as work:
            pool_spec = DatasetSpec(
                name="pretraining images",
                task="classification",
                spatial_dims=dims,  # type: ignore[arg-type]
                channels=channel_names,
                classes=["image"],
                image_roots=[str(f) for f in common_folders([p for paths in images for p in paths])],
            )
            pool_cases = [
                Case(f"{i:07d}", f"{i:07d}", [str(p.resolve()) for p in paths], "0", "train")
                for i, paths in enumerate(images)
            ]
            pool = write_dataset(work, pool_spec, pool_cases)
            data, model, planned_by = pretraining_plan(sources, pool)
            name, kwargs = model.name, dict(model.kwargs)
            if backbone and backbone != name:
                name, kwargs = backbone, {}
            encoder, dim = build_encoder(
                name, kwargs, spatial_dims=dims, channels=data.channels, input_size=data.input_size, method=method
            )
            x = normalize(load_in_memory(pool, pool.cases, data, progress, "pretraining images"), data)
        batch = batch_size or (128 if dims == 2 else 64)
        result = pretrain_encoder(
            x,
            encoder,
            dim,
            method,
            budget_minutes=budget_minutes,
            max_epochs=max_epochs,
            batch_size=batch,
            lr=lr,
            seed=seed,
            progress=progress,
        )
        save_file(result.state, str(tmp / "encoder.safetensors"), metadata={"method": method, "backbone": name})
        record: dict[str, Any] = {
            "method": method,
            "backbone": {"name": name, "kwargs": kwargs, "embedding_size": dim},
            "spatial_dims": dims,
            "channels": data.channels,
            "input_size": list(data.input_size),
            "intensity": {
                "normalization": data.normalization,
                "mean": data.mean,
                "std": data.std,
                "clip": data.clip,
                "fit": data.fit,
            },
            "planned_by": planned_by,
            "images": {"total": len(images), "per_input": counts},
            "augmentation": _augmentation(method, dims),
            "batch_size": min(batch, len(images)),
            "lr": lr,
            "seed": seed,
            "budget_minutes": budget_minutes,
            "steps": result.steps,
            "epochs": result.epochs,
            "seconds": result.seconds,
            "final_loss": round(sum(result.losses[-20:]) / max(1, len(result.losses[-20:])), 5),
            "tensors": len(result.state),
            "use": f"medlens train DATASET --set model.init={Path(out)} (the task's network must be {name} {kwargs})",
        }
        with atomic_file(tmp / "pretrain.yaml", "wb") as handle:
            handle.write(yaml.safe_dump(record, sort_keys=False).encode("utf-8"))  # type: ignore[attr-defined]
        _plot_loss(result.losses, tmp / "loss.png", method)
    return record


def _augmentation(method: str, dims: int) -> dict[str, Any]:
    """What ``pretrain.yaml`` records of the views: the augmentation, and MAE's masking."""
    from medlens.training.masked_autoencoder import MASK_RATIO, mae_view_plan
    from medlens.training.views import BLUR_PROBABILITY, view_plan

    if method == "mae":
        return mae_view_plan(dims).model_dump(exclude={"why"}) | {"mask_ratio": MASK_RATIO, "views": 1}
    return view_plan(dims).model_dump(exclude={"why"}) | {"blur_probability": BLUR_PROBABILITY, "views": 2}


def _plot_loss(losses: list[float], path: Path, method: str) -> None:
    """The loss per step (and its running mean over 20 steps) as a PNG."""
    import numpy as np

    from medlens.reports.figures import figure

    fig = figure(6, 3.5)
    ax = fig.subplots()
    if losses:
        values = np.asarray(losses)
        ax.plot(values, alpha=0.35, label="per step")
        k = min(20, len(values))
        ax.plot(np.arange(k - 1, len(values)), np.convolve(values, np.ones(k) / k, mode="valid"), label=f"mean of {k}")
        ax.legend()
    ax.set(xlabel="step", ylabel="loss", title=f"{method} pretraining loss")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=90)
