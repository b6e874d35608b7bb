"""Planning rules for networks that read a whole image and give one answer (class scores, labels, a value).

Shared by the tasks of that kind (classification, multi-label, regression); each adds its own section. Each rule
reads the fingerprint and records its reason in the notes, so that "why is the width 0.5?" has an answer in
``plan.yaml`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from medlens.data.modalities import LATERAL_MODALITIES
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan

MAX_SIDE_2D = 224  # larger 2D images are resized down to this (ImageNet-style backbones' native size)
MAX_SIDE_3D = 96  # larger 3D volumes are resized down to this per axis (CPU/GPU memory)
MEMORY_CACHE_LIMIT_GB = 6.0
MIN_EPOCHS = 15  # on CPU, the width is narrowed until the budget covers this many epochs
# Training throughput assumed for a 2-core laptop-class CPU (GFLOP/s; PyTorch runs 2D convolutions about
# twice as efficiently as 3D ones there). Counted FLOPs over these give the time an epoch should take.
CPU_GFLOPS = {2: 150.0, 3: 60.0}
CPU_BUDGET_MINUTES = 6.0  # per seed: three seeds of a benchmark train in under 20 minutes on a laptop CPU


@dataclass
class ImagePlanSections:
    """The shared plan sections of a whole-image model, and the notes that explain them."""

    data: DataPlan
    augment: AugmentPlan
    model: ModelPlan
    optim: OptimPlan
    train: TrainPlan
    notes: list[str]


def plan_image_model(
    fingerprint: dict[str, Any],
    *,
    has_gpu: bool,
    cost: Callable[..., float] | None,
    monitor: str,
    monitor_mode: Literal["max", "min"],
    zoom: bool = True,
) -> ImagePlanSections:
    """Rules for networks that read a whole image and answer once (classification, regression), 2D and 3D.

    Args:
        fingerprint: what the data is.
        has_gpu: a GPU trains the plan (no time budget is set then).
        cost: ``cost(name, kwargs, input_size=...) -> training GFLOPs per image``; when given (CPU training),
            the network's width is narrowed until the time budget covers ``MIN_EPOCHS`` epochs at the assumed
            CPU throughput.
        monitor: the validation figure that picks the best checkpoint.
        monitor_mode: whether it is better higher (``max``) or lower.
        zoom: random zoom is a fair augmentation (not when the target is itself a size).
    """
    notes: list[str] = []
    dims = int(fingerprint["spatial_dims"])
    n_train = int(fingerprint["n_cases"]["train"])
    cap = MAX_SIDE_2D if dims == 2 else MAX_SIDE_3D
    if zoom:
        median = [int(v) for v in fingerprint["shape"]["median"]]
        input_size = [min(s, cap) for s in median]
        if input_size != median:
            notes.append(f"input size {input_size}: median image {median} shrunk to at most {cap} per axis")
        else:
            notes.append(f"input size {input_size}: the median image size")
    else:
        largest = [int(v) for v in fingerprint["shape"]["max"]]
        input_size = [min(s + s % 2, cap) for s in largest]
        notes.append(
            f"input size {input_size}: the largest image {largest}, images padded (or cropped beyond {cap}) about "
            "the centre, never resampled, so the size of things in them keeps its meaning"
        )

    data = _data_plan(fingerprint, input_size, notes)
    if not zoom:
        data = data.model_copy(update={"fit": "pad"})
    augment = _augment_plan(fingerprint, dims, zoom, notes)
    voxels = math.prod(input_size)
    batch = int(min(128, max(8, 2 ** round(math.log2(max(1, (2 if dims == 2 else 1) * 2**21 // voxels))))))
    batch = min(batch, max(8, 2 ** int(math.log2(max(8, n_train // 8)))))
    notes.append(f"batch size {batch}: about 2M input voxels per batch, at least 8 steps per epoch")
    budget = None if has_gpu else CPU_BUDGET_MINUTES
    model = _model_plan(dims, input_size, n_train, notes)
    if budget and cost is not None:
        model = _fit_width(model, n_train, input_size, budget, cost, notes)

    from medlens.training.finetuning import rule_note

    notes.append(rule_note(n_train))
    steps_per_epoch = max(1, n_train // batch)
    max_epochs = int(min(200, max(30, 20000 // steps_per_epoch)))
    notes.append(f"up to {max_epochs} epochs (about 20k steps for this data size, between 30 and 200)")
    if budget:
        notes.append(
            f"no GPU here: training budget {budget:g} min, the learning rate anneals to it "
            "(train.budget_minutes=null trains all epochs)"
        )
    train = TrainPlan(
        batch_size=batch,
        max_epochs=max_epochs,
        budget_minutes=budget,
        early_stopping_patience=max(10, max_epochs // 5),
        monitor=monitor,
        monitor_mode=monitor_mode,
    )
    optim = OptimPlan(name="adamw", lr=2e-3 if dims == 2 else 1e-3, weight_decay=5e-2, schedule="cosine")
    return ImagePlanSections(data, augment, model, optim, train, notes)


def _data_plan(fp: dict[str, Any], input_size: list[int], notes: list[str]) -> DataPlan:
    inten = fp["intensity"]
    modality = str(fp.get("modality", "OT")).upper()
    clip = None
    if modality == "CT":
        clip = [inten["p00_5"], inten["p99_5"]]
        notes.append(f"CT: intensities clipped to the 0.5-99.5 percentiles {clip} before z-scoring")
    elif inten["max"] - inten["min"] > 0 and inten["n_unique"] > 256:
        clip = [inten["p00_5"], inten["p99_5"]]
        notes.append("continuous intensities: clipped to the 0.5-99.5 percentiles, then z-scored")
    else:
        notes.append("z-score normalisation with the dataset mean and standard deviation")
    mean, std = inten["mean"], max(inten["std"], 1e-6)
    gb = fp["n_cases"]["all"] * math.prod(input_size) * fp["channels"] * 4 / 1e9
    cache: Literal["memory", "none"] = "memory" if gb <= MEMORY_CACHE_LIMIT_GB else "none"
    notes.append(f"data cache: {cache} ({gb:.2f} GB of resized images)")
    return DataPlan(input_size=input_size, channels=int(fp["channels"]), mean=mean, std=std, clip=clip, cache=cache)


def _augment_plan(fp: dict[str, Any], dims: int, zoom: bool, notes: list[str]) -> AugmentPlan:
    modality = str(fp.get("modality", "OT")).upper()
    binary = fp["intensity"]["n_unique"] <= 2
    lateral = modality in LATERAL_MODALITIES
    flips = [] if lateral else list(range(dims))
    why = [
        "no mirroring: this modality's anatomy has a left and a right"
        if lateral
        else "mirroring on every axis: no handedness assumed for this modality"
    ]
    if binary:
        why.append("no intensity changes: the images are binary masks")
    if not zoom:
        why.append("no zoom: the target is a size, which a zoom would change")
    return AugmentPlan(
        flip_axes=flips,
        rotate_degrees=15.0 if dims == 2 else 10.0,
        scale=[0.9, 1.1] if zoom else [1.0, 1.0],
        translate=0.06,
        brightness=0.0 if binary else 0.1,
        contrast=0.0 if binary else 0.15,
        noise_std=0.0 if binary else 0.05,
        spatial_probability=0.8,
        intensity_probability=1.0,
        why="; ".join(why),
    )


def _model_plan(dims: int, input_size: list[int], n_train: int, notes: list[str]) -> ModelPlan:
    small = min(input_size) <= 64
    width = 0.5 if n_train < 5000 else 1.0
    if dims == 2:
        depth = 18
        stem = {"stem_stride": 1 if small else 2, "stem_pool": not small}
    else:
        depth = 18 if max(input_size) <= 32 else 10
        stem = {"stem_stride": 2, "stem_pool": min(input_size) > 32}
    why = (
        f"MONAI ResNet-{depth} in {dims}D, width x{width} ({n_train} training cases"
        f"{' < 5000: half width against overfitting' if width < 1 else ''}); "
        f"stem stride {stem['stem_stride']}{' + max-pool' if stem['stem_pool'] else ''} for {input_size} inputs"
    )
    if dims == 3 and depth == 10:
        why += "; ResNet-10 since volumes above 32 per axis cost ~8x more per layer"
    notes.append(why)
    return ModelPlan(name=f"monai_resnet{depth}", kwargs={"widen_factor": width, **stem}, dropout=0.2, why=why)


def _fit_width(
    model: ModelPlan,
    n_train: int,
    input_size: list[int],
    budget: float,
    cost: Callable[..., float],
    notes: list[str],
) -> ModelPlan:
    """Halve the network's width (down to x0.25) until the CPU budget covers ``MIN_EPOCHS`` epochs.

    An under-trained wide network is worse than a well-trained narrow one. FLOPs are counted rather than
    timed so that the plan does not depend on what else the machine is doing.
    """
    throughput = CPU_GFLOPS[len(input_size)]
    width = float(model.kwargs["widen_factor"])
    while True:
        kwargs = {**model.kwargs, "widen_factor": width}
        gflops = cost(model.name, kwargs, input_size=input_size)
        epochs = budget * 60 * throughput / (gflops * max(1, n_train))
        if epochs >= MIN_EPOCHS or width <= 0.25:
            break
        width /= 2
    note = (
        f"width x{width:g}: {gflops:.2f} training GFLOPs per image, about {epochs:.0f} epochs in the {budget:g} min "
        f"budget at an assumed {throughput:g} GFLOP/s"
        f"{'' if epochs >= MIN_EPOCHS else f' (fewer than {MIN_EPOCHS}, even at the narrowest width)'}"
    )
    notes.append(note)
    return model.model_copy(update={"kwargs": kwargs, "why": f"{model.why}; {note}"})


def cost_counter(fingerprint: dict[str, Any], outputs: int) -> Callable[..., float]:
    """Training GFLOPs per image of a candidate network with ``outputs`` outputs, for the CPU budget rule."""
    from medlens.models.cost import training_gflops

    def cost(name: str, kwargs: dict[str, Any], *, input_size: list[int]) -> float:
        return training_gflops(
            name,
            kwargs,
            spatial_dims=len(input_size),
            in_channels=int(fingerprint["channels"]),
            num_classes=outputs,
            input_size=input_size,
        )

    return cost


# Backbone families a plan can be asked for by name (``--set model.name=vit``), largest first: the plan takes the
# largest member whose training fits MIN_EPOCHS epochs in the budget (the largest of all on a GPU).
BACKBONE_FAMILIES: dict[str, dict[int, list[tuple[str, dict[str, Any]]]]] = {
    "vit": {
        2: [("vit_small", {}), ("vit_tiny", {}), ("vit_tiny", {"depth": 6})],
        3: [
            ("monai_vit", {"hidden_size": 384, "num_heads": 6, "num_layers": 12}),
            ("monai_vit", {"num_layers": 12}),
            ("monai_vit", {}),
        ],
    },
    "convnext": {2: [("convnext_nano", {}), ("convnext_atto", {})]},
}


def size_backbone(
    family: str,
    input_size: list[int],
    n_train: int,
    budget: float | None,
    cost: Callable[..., float] | None,
    dropout: float = 0.0,
) -> ModelPlan:
    """The member of a backbone family (:data:`BACKBONE_FAMILIES`) that fits the images and the time budget.

    Without a budget (a GPU) or a cost counter, the largest member; otherwise the largest whose training takes at
    least ``MIN_EPOCHS`` epochs of ``n_train`` images in ``budget`` minutes at the assumed CPU throughput (the rule
    :func:`_fit_width` applies to ResNets), else the smallest. The reason is the plan's ``model.why``.

    Raises:
        ConfigError: an unknown family, or one with no member for the data's dimensions.
    """
    from medlens.core.errors import ConfigError

    dims = len(input_size)
    if family not in BACKBONE_FAMILIES:
        raise ConfigError(
            "model.name", f"unknown backbone family {family!r} (choose from {', '.join(BACKBONE_FAMILIES)})"
        )
    members = BACKBONE_FAMILIES[family].get(dims)
    if not members:
        raise ConfigError("model.name", f"the {family} family has no {dims}D network (see 'medlens models')")
    if budget is None or cost is None:
        name, kwargs = members[0]
        why = f"{family}: {name} {kwargs or ''}, the largest of the family (no CPU time budget)".replace(" ,", ",")
        return ModelPlan(name=name, kwargs=kwargs, dropout=dropout, why=why)
    throughput = CPU_GFLOPS[dims]
    tried = []
    for name, kwargs in members:
        gflops = cost(name, kwargs, input_size=input_size)
        epochs = budget * 60 * throughput / (gflops * max(1, n_train))
        tried.append(f"{name}{kwargs or ''} {epochs:.1f}")
        if epochs >= MIN_EPOCHS:
            break
    label = f"{name} {kwargs}" if kwargs else name
    why = (
        f"{family} sized to the budget: {label}, {gflops:.2f} training GFLOPs per {input_size} image, about "
        f"{epochs:.0f} epochs of {n_train} images in {budget:g} min at an assumed {throughput:g} GFLOP/s "
        + (
            f"(the largest with at least {MIN_EPOCHS} epochs"
            if epochs >= MIN_EPOCHS
            else f"(the smallest; none reaches {MIN_EPOCHS} epochs"
        )
        + f"; epochs by size: {', '.join(tried)})"
    )
    return ModelPlan(name=name, kwargs=kwargs, dropout=dropout, why=why)
