"""Planning rules for segmentation, 2D and 3D, in the spirit of nnU-Net's published method.

Each rule reads the fingerprint (``fingerprint["segmentation"]``, see
:mod:`.fingerprint`) and writes its reason into ``plan.notes`` or
``plan.segmentation.why``, so ``plan.yaml`` answers "why is the patch 40x56x40?" by itself.

The rules: target spacing is the median spacing, except along an axis that is much coarser than the others
(nnU-Net's anisotropy rule: its 10th percentile instead); the patch starts from the median image at the
target spacing and shrinks to a voxel budget; the network is pooled per axis until the feature map is small
(an axis much coarser than the others waits, with 1-wide kernels, until the others catch up); width follows
the hardware; the batch fills a memory budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.core.errors import InputError
from medlens.tasks.segmentation.config import SegmentationOptions, SegmentationPlan
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan

ANISOTROPY_RATIO = 3.0  # nnU-Net: an axis this much coarser than the finest is "anisotropic"
MIN_FEATURE_SIZE = 4  # stop pooling an axis when it would fall below this many voxels
MAX_STAGES = {2: 7, 3: 6}  # resolution stages, full resolution included
MAX_FILTERS = {2: 512, 3: 320}
PATCH_VOXELS = {(2, True): 1024 * 1024, (2, False): 256 * 256, (3, True): 128**3, (3, False): 80**3}
MEMORY_BUDGET_GB = {True: 8.0, False: 2.0}  # activations per batch, GPU vs CPU
MAX_BATCH = {True: 32, False: 4}  # on CPU small batches give more updates within the budget
CPU_BUDGET_MINUTES = 40.0
MIN_SLICES_FOR_3D = 12  # fewer slices along a coarse axis: segment slice by slice
LATERAL_WORDS = ("left", "right", "_l", "_r")


def plan_segmentation(fingerprint: dict[str, Any], *, has_gpu: bool = False) -> SegmentationPlan:
    """Derive a segmentation plan from a fingerprint.

    Example:
        >>> from medlens.data.fingerprint import compute_fingerprint  # doctest: +SKIP
        >>> plan = plan_segmentation(compute_fingerprint(dataset))  # doctest: +SKIP
        >>> plan.data.input_size, plan.segmentation.strides  # doctest: +SKIP
        ([40, 56, 40], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    """
    seg = fingerprint.get("segmentation")
    if not seg:
        raise InputError("fingerprint.json", "no segmentation statistics (delete fingerprint.json to recompute)")
    notes: list[str] = []
    dims = int(fingerprint["spatial_dims"])
    spacings = np.array(seg["spacings"], dtype=float)  # (N, dims)
    shapes = np.array(seg["shapes"], dtype=float)  # (N, dims)
    target = _target_spacing(spacings, shapes, notes)
    resampled = np.median(shapes * spacings / target, axis=0)  # median shape at the target spacing
    configuration, why = _configuration(dims, target, resampled)
    notes.append(why)
    patch, kernels, strides = _topology(configuration, target, resampled, has_gpu, notes)
    base = 32 if has_gpu else 16
    filters = [min(base * 2**i, MAX_FILTERS[dims]) for i in range(len(strides))]
    notes.append(
        f"DynUNet, {len(strides)} stages, filters {filters}"
        + ("" if has_gpu else ": half nnU-Net's width (32) because there is no GPU and the budget is short")
    )
    batch = _batch_size(patch, strides, filters, has_gpu, shapes, notes)
    norm, clip, mean, std = _normalization(str(fingerprint.get("modality", "OT")), seg, notes)
    mirror = _mirror_axes(configuration, dims, list(fingerprint["class_names"]), notes)
    n_train = int(fingerprint["n_cases"]["train"])
    iterations = 250 if has_gpu else 50
    segmentation = SegmentationOptions(
        configuration=configuration,
        target_spacing=[round(float(v), 5) for v in target],
        kernels=kernels,
        strides=strides,
        filters=filters,
        deep_supervision=len(strides) > 2,
        deep_supervision_heads=max(1, min(3, len(strides) - 2)),
        normalization=norm,
        ct_clip=clip,
        ct_mean=mean,
        ct_std=std,
        iterations_per_epoch=iterations,
        sw_batch_size=4 if has_gpu else 2,
        mirror_axes=mirror,
        why=why,
    )
    notes.append(
        f"Dice + cross-entropy loss{', deep supervision on ' if segmentation.deep_supervision else ''}"
        f"{segmentation.deep_supervision_heads if segmentation.deep_supervision else ''}"
        f"{' lower resolutions' if segmentation.deep_supervision else ''}; 1/3 of patches centred on foreground"
    )
    notes.append(
        f"an epoch is {iterations} batches; validation on whole cases with a Gaussian sliding window (overlap 0.5)"
    )
    budget = None if has_gpu else CPU_BUDGET_MINUTES
    max_epochs = 1000 if has_gpu else 400
    if budget:
        notes.append(f"no GPU here: training budget {budget:g} min, the schedule anneals to it")
    rotate = 30.0 if configuration != "3d" or min(target) * ANISOTROPY_RATIO > max(target) else 15.0
    augment = AugmentPlan(
        flip_axes=mirror,
        rotate_degrees=rotate,
        scale=[0.7, 1.4],
        translate=0.0,
        brightness=0.0,
        contrast=0.25,
        gamma=0.25,
        noise_std=0.1,
        spatial_probability=0.2,
        intensity_probability=0.15,
        why="nnU-Net's ranges: rotation, scaling and mirroring of image and mask together (chance 0.2); "
        "contrast (multiplicative), gamma and noise on the image only (chance 0.15 each)",
    )
    return SegmentationPlan(
        task="segmentation",
        spatial_dims=dims,  # type: ignore[arg-type]
        class_names=list(fingerprint["class_names"]),
        data=DataPlan(
            input_size=patch,
            channels=len(norm),
            normalization="none",
            cache="memory" if _cache_gb(seg, target) < 6 else "none",
        ),
        augment=augment,
        model=ModelPlan(name="dynunet", kwargs={}, why="MONAI DynUNet with the topology in plan.segmentation"),
        optim=OptimPlan(name="sgd", lr=0.01, momentum=0.99, weight_decay=3e-5, schedule="cosine", warmup_fraction=0.0)
        if has_gpu
        else OptimPlan(name="adamw", lr=3e-3, weight_decay=3e-5, schedule="cosine", warmup_fraction=0.02),
        train=TrainPlan(
            batch_size=batch,
            max_epochs=max_epochs,
            budget_minutes=budget,
            early_stopping_patience=None,
            monitor="val_dice",
            monitor_mode="max",
            seed=0,
        ),
        segmentation=segmentation,
        notes=[
            *notes,
            f"{n_train} training cases; optimiser "
            + (
                "SGD lr 0.01, Nesterov momentum 0.99 (nnU-Net)"
                if has_gpu
                else "AdamW lr 3e-3 (converges faster than SGD in the few thousand steps a CPU budget allows)"
            ),
        ],
    )


def _target_spacing(spacings: np.ndarray, shapes: np.ndarray, notes: list[str]) -> np.ndarray:
    target = np.median(spacings, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    if others and target[worst] > ANISOTROPY_RATIO * min(target[others]):
        sizes = np.median(shapes, axis=0)
        if sizes[worst] * ANISOTROPY_RATIO < max(sizes[others]):
            # nnU-Net: resampling a coarse axis to its median would blur most cases; use its 10th percentile
            low = float(np.percentile(spacings[:, worst], 10))
            target[worst] = max(low, max(target[others]) + 1e-5)
            notes.append(f"anisotropic data: axis {worst} spacing {target[worst]:.3g} mm (its 10th percentile)")
    notes.append(f"target spacing {np.round(target, 4).tolist()} mm (median of the training cases)")
    return target


def _configuration(dims: int, target: np.ndarray, shape: np.ndarray) -> tuple[str, str]:
    if dims == 2:
        return "2d", "2D pictures: 2D network"
    worst = int(np.argmax(target))
    ratio = float(target[worst] / min(target))
    if ratio > ANISOTROPY_RATIO and shape[worst] < MIN_SLICES_FOR_3D:
        return "2d_slices", (
            f"anisotropic volumes (axis {worst} {ratio:.1f}x coarser) with only {shape[worst]:.0f} slices: "
            f"too few to pool in 3D, so segmented slice by slice (in-plane 2D network)"
        )
    if ratio > ANISOTROPY_RATIO:
        return "3d", f"anisotropic volumes (axis {worst} {ratio:.1f}x coarser): 3D with in-plane-first pooling"
    return "3d", "3D volumes with near-isotropic voxels: 3D network"


def _topology(
    configuration: str, target: np.ndarray, shape: np.ndarray, has_gpu: bool, notes: list[str]
) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """Patch size, kernels and strides: pool each axis until its feature map is small."""
    dims = len(target)
    flat = configuration == "2d_slices"
    through = int(np.argmax(target)) if flat else -1
    patch = np.maximum(np.ceil(shape), 1).astype(int)
    if flat:
        patch[through] = 1
    budget = PATCH_VOXELS[(2 if configuration != "3d" else 3, has_gpu)]
    while np.prod(patch) > budget:  # shrink the axis that is largest in millimetres
        mm = patch * target
        if flat:
            mm[through] = 0
        axis = int(np.argmax(mm))
        patch[axis] = max(MIN_FEATURE_SIZE, int(patch[axis] * 0.9))
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * dims]
    size = patch.astype(float)
    spacing = target.astype(float).copy()
    kernels.append([1 if (flat and a == through) or spacing[a] > 2 * spacing.min() else 3 for a in range(dims)])
    while len(strides) < MAX_STAGES[dims]:
        stride = []
        for a in range(dims):
            coarse = spacing[a] > 2 * min(spacing[b] for b in range(dims) if not (flat and b == through))
            ok = size[a] / 2 >= MIN_FEATURE_SIZE and not coarse and not (flat and a == through)
            stride.append(2 if ok else 1)
        if max(stride) == 1:
            break
        size = size / np.array(stride)
        spacing = spacing * np.array(stride)
        strides.append(stride)
        kernels.append([1 if (flat and a == through) or spacing[a] > 2 * spacing.min() else 3 for a in range(dims)])
    divisor = np.prod(np.array(strides), axis=0)
    patch = (np.ceil(patch / divisor) * divisor).astype(int)
    notes.append(
        f"patch {patch.tolist()} (median case at target spacing {np.round(shape, 1).tolist()}, within "
        f"{budget} voxels, a multiple of {divisor.tolist()}); {len(strides) - 1} poolings per axis "
        f"{np.log2(divisor).astype(int).tolist()} until feature maps reach about {MIN_FEATURE_SIZE} voxels"
    )
    return [int(v) for v in patch], kernels, strides


def _batch_size(
    patch: list[int],
    strides: list[list[int]],
    filters: list[int],
    has_gpu: bool,
    shapes: np.ndarray,
    notes: list[str],
) -> int:
    voxels = float(np.prod(patch))
    per_sample = 0.0
    scale = np.ones(len(patch))
    for stride, width in zip(strides, filters, strict=True):
        scale = scale * np.array(stride)
        per_sample += voxels / float(np.prod(scale)) * width
    # about 12 float32 tensors of this size per stage (two convolutions, norms, activations, their gradients,
    # encoder and decoder); a rough count, calibrated on a DynUNet forward-backward on CPU
    bytes_per_sample = per_sample * 4 * 12 * 2
    fit = int(MEMORY_BUDGET_GB[has_gpu] * 1e9 // bytes_per_sample)
    dataset_voxels = float(np.prod(shapes, axis=1).sum())
    by_data = int(0.05 * dataset_voxels // voxels)  # nnU-Net: a batch covers at most 5% of the data
    batch = int(max(2, min(fit, by_data, MAX_BATCH[has_gpu])))
    notes.append(
        f"batch size {batch}: {fit} patches fit the {MEMORY_BUDGET_GB[has_gpu]:g} GB activation budget, "
        f"{by_data} would cover 5% of the data"
        + ("" if has_gpu else f", at most {MAX_BATCH[False]} on CPU so the budget buys more updates")
    )
    return batch


def _normalization(
    modality: str, seg: dict[str, Any], notes: list[str]
) -> tuple[list[Any], list[list[float]] | None, list[float] | None, list[float] | None]:
    stats = seg["foreground_intensity"]
    if modality.upper() == "CT":
        clip = [[round(s["p00_5"], 4), round(s["p99_5"], 4)] for s in stats]
        mean = [round(s["mean"], 4) for s in stats]
        std = [round(max(s["std"], 1e-6), 4) for s in stats]
        notes.append(f"CT: clipped to foreground 0.5-99.5 percentiles {clip}, z-scored with foreground statistics")
        return ["ct"] * len(stats), clip, mean, std
    notes.append(f"{modality}: each case z-scored by its own mean and standard deviation, per channel")
    return ["zscore"] * len(stats), None, None, None


def _mirror_axes(configuration: str, dims: int, class_names: list[str], notes: list[str]) -> list[int]:
    lateral = [n for n in class_names if any(w in n.lower() for w in LATERAL_WORDS[:2])]
    if lateral:
        notes.append(f"no mirroring: classes {lateral} depend on the side")
        return []
    axes = list(range(dims))
    notes.append(f"mirroring on axes {axes} in training and for test-time augmentation (labels follow the image)")
    return axes


def _cache_gb(seg: dict[str, Any], target: np.ndarray) -> float:
    spacings, shapes = np.array(seg["spacings"]), np.array(seg["shapes"])
    voxels = float((np.prod(shapes * spacings / target, axis=1)).sum())
    return voxels * (4 * len(seg["foreground_intensity"]) + 1) / 1e9 * 1.25  # plus the test split
