"""Planning rules for 2D object detection: from box statistics to input size, anchors, detector and schedule.

Each rule records its reason in ``plan.notes`` (or a ``why`` field). The statistics come from
:mod:`.fingerprint` (``fingerprint["boxes"]``).
"""

from __future__ import annotations

import math
from typing import Any

from medlens.data.modalities import LATERAL_MODALITIES
from medlens.tasks.detection.config import DetectionOptions, DetectionPlan
from medlens.training.plan import AugmentPlan, DataPlan, ModelPlan, OptimPlan, TrainPlan

MIN_OBJECT_SIDE = 20  # px at the network input for the smallest class's 5th-percentile box: 2.5 cells at stride 8
MAX_LONG_SIDE_CPU = 512  # px; a CPU trains on small inputs
MAX_LONG_SIDE_GPU = 1024
SIZE_MULTIPLE = 32  # the coarsest backbone stride that must divide the input
CPU_BUDGET_MINUTES = 45.0  # the detection benchmark's budget on a laptop CPU
TARGET_STEPS = 12000
WIDE_ASPECT_SPREAD = 4.0  # p95 / p5 of height/width above this: anchors fit poorly, go anchor-free (FCOS)
FPN_LEVELS = 5  # P3-P7, as torchvision's RetinaNet and FCOS


def plan_detection(fingerprint: dict[str, Any], *, has_gpu: bool = False) -> DetectionPlan:
    """Derive a detection plan from a fingerprint with a ``boxes`` section."""
    notes: list[str] = []
    stats = fingerprint["boxes"]
    n_train = int(fingerprint["n_cases"]["train"])
    scale, input_size = _input_size(stats, has_gpu, notes)
    data = DataPlan(
        input_size=input_size,
        channels=int(fingerprint["channels"]),
        normalization="zscore",
        mean=float(fingerprint["intensity"]["mean"]),
        std=max(float(fingerprint["intensity"]["std"]), 1e-6),
        cache="memory",
    )
    notes.append("z-score normalisation with the dataset mean and standard deviation (inside the detector)")
    detection, family = _detection_plan(stats, scale, input_size, notes)
    augment = _augment_plan(fingerprint, notes)
    channels = 256 if has_gpu else 128
    model = ModelPlan(
        name=family,
        kwargs={"backbone": "resnet18", "fpn_channels": channels},
        why=f"torchvision {family} on a ResNet-18 FPN with {channels} channels per level"
        f"{'' if has_gpu else ' (half the usual 256: the heads dominate CPU time, this halves a training step)'}, "
        "trained from scratch (no pretrained weights here; model.pretrained=PATH starts from a local checkpoint)",
    )
    notes.append(model.why)
    pixels = input_size[0] * input_size[1]
    batch = 4 if not has_gpu else int(min(16, max(2, 2 ** round(math.log2(2**22 / pixels)))))
    batch = max(2, min(batch, n_train // 4 or 2))
    steps_per_epoch = max(1, n_train // batch)
    max_epochs = int(min(300, max(24, TARGET_STEPS // steps_per_epoch)))
    budget = None if has_gpu else CPU_BUDGET_MINUTES
    notes.append(
        f"batch size {batch} ({'GPU: about 4M input pixels per batch' if has_gpu else 'CPU'}); up to {max_epochs}"
        f" epochs (about {TARGET_STEPS} steps)"
        + (f"; no GPU: budget {budget:g} min, the learning rate anneals to it" if budget else "")
    )
    train = TrainPlan(
        batch_size=batch,
        max_epochs=max_epochs,
        budget_minutes=budget,
        early_stopping_patience=max(15, max_epochs // 6),
        monitor="val_map50",
        monitor_mode="max",
    )
    optim = OptimPlan(name="adamw", lr=1e-3, weight_decay=5e-2, schedule="cosine", warmup_fraction=0.05)
    notes.append("AdamW lr 1e-3, cosine after 5% warm-up, gradients clipped at norm 10 (from-scratch detectors)")
    return DetectionPlan(
        task="detection",
        spatial_dims=2,
        class_names=list(fingerprint["class_names"]),
        data=data,
        augment=augment,
        model=model,
        optim=optim,
        train=train,
        detection=detection,
        notes=notes,
    )


def _input_size(stats: dict[str, Any], has_gpu: bool, notes: list[str]) -> tuple[float, list[int]]:
    """Scale the median image so the small boxes stay visible, within the machine's size limit."""
    height, width = stats["image_size"]["median"]
    small = smallest_side(stats)
    cap = MAX_LONG_SIDE_GPU if has_gpu else MAX_LONG_SIDE_CPU
    wanted = MIN_OBJECT_SIDE / small
    scale = min(wanted, cap / max(height, width), 2.0)
    size = [max(SIZE_MULTIPLE, SIZE_MULTIPLE * math.ceil(v * scale / SIZE_MULTIPLE)) for v in (height, width)]
    scale = min(size[0] / height, size[1] / width)
    reason = (
        f"small boxes (5th percentile of the smallest class) of {small:.0f} px become {small * scale:.0f} px (at least "
        f"{MIN_OBJECT_SIDE} wanted)"
        if wanted <= cap / max(height, width)
        else f"long side capped at {cap} px on {'GPU' if has_gpu else 'CPU'}; small boxes become {small * scale:.0f} px"
    )
    notes.append(f"input size {size} (image {height}x{width} scaled by {scale:.2f}): {reason}")
    return scale, size


def _detection_plan(
    stats: dict[str, Any], scale: float, input_size: list[int], notes: list[str]
) -> tuple[DetectionOptions, str]:
    aspect = stats["aspect"]
    spread = aspect["p95"] / max(aspect["p5"], 1e-6)
    short = input_size[0] if input_size[0] <= input_size[1] else input_size[1]
    sides = sorted({SIZE_MULTIPLE * round(short * f / SIZE_MULTIPLE) for f in (0.8, 0.9, 1.1, 1.2)} - {short})
    train_sides = [*sides, short]  # the last is the evaluation size (torchvision's convention)
    crowded = stats["objects_per_image"]["median"] > 30
    why = [
        f"scale jitter: short side drawn from {train_sides}",
        "box-safe crops in 30% of images (boxes cut to the crop, slivers dropped)"
        if not crowded
        else "no crops: crowded images",
    ]
    if spread > WIDE_ASPECT_SPREAD:
        family, anchors, ratios = "fcos", None, [0.5, 1.0, 2.0]
        why.append(f"box aspect ratios spread {spread:.1f}x (p5-p95): anchor-free FCOS")
    else:
        family = "retinanet"
        base = max(16.0, round(smallest_side(stats) * scale))
        anchors = [[round(base * 2**level * 2 ** (k / 3), 1) for k in range(3)] for level in range(FPN_LEVELS)]
        ratios = sorted({_round(aspect["p5"]), _round(aspect["p50"]), _round(aspect["p95"])})
        why.append(
            f"RetinaNet anchors from the boxes: {base:.0f} px at P3 (the small boxes at input scale), doubling per "
            f"level, 3 scales per octave; aspect ratios {ratios} (5th, 50th, 95th percentile of height/width)"
        )
    notes.append("; ".join(why))
    plan = DetectionOptions(
        anchor_sizes=anchors,
        aspect_ratios=ratios,
        train_short_sides=train_sides,
        crop_probability=0.0 if crowded else 0.3,
        saturation=0.2,
        hue=0.02,
        detections_per_image=max(100, int(stats["objects_per_image"]["max"] * 2)),
        why="; ".join(why),
    )
    notes.append("score and NMS thresholds are chosen on validation after training (F1 at IoU 0.5; best mAP@.5)")
    return plan, family


def _augment_plan(fingerprint: dict[str, Any], notes: list[str]) -> AugmentPlan:
    lateral = str(fingerprint.get("modality", "OT")).upper() in LATERAL_MODALITIES
    colour = int(fingerprint["channels"]) == 3
    why = (
        "horizontal mirroring only: this modality's anatomy has a left and a right"
        if lateral
        else "mirroring on both axes: no handedness assumed for this modality"
    )
    notes.append(f"augmentation: {why}; brightness/contrast jitter{' and colour' if colour else ''}")
    return AugmentPlan(
        flip_axes=[] if lateral else [0, 1],
        rotate_degrees=0.0,
        scale=[1.0, 1.0],
        translate=0.0,
        brightness=0.15,
        contrast=0.15,
        noise_std=0.0,
        spatial_probability=0.0,
        intensity_probability=0.5,
        why=why + " (scale jitter and crops: see detection)",
    )


def smallest_side(stats: dict[str, Any], min_boxes: int = 10) -> float:
    """The 5th-percentile box side of the class with the smallest boxes (classes with ``min_boxes`` or more),
    so a small, rare class is not hidden among many large boxes; the overall 5th percentile without classes."""
    counts = stats["class_counts"]["train"]
    per_class = [
        float(p["p5"]) for p, n in zip(stats.get("side_per_class", {}).values(), counts, strict=False) if n >= min_boxes
    ]
    return max(min(per_class, default=float(stats["side"]["p5"])), 1.0)


def _round(value: float) -> float:
    return round(round(value * 20) / 20, 2)  # nearest 0.05
