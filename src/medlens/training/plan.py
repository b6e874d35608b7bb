"""The typed plan: every hyperparameter is a field here or in a task's own section; none hides in code.

The sections every task shares are here (``data``, ``augment``, ``model``, ``optim``, ``train``); a task adds
its own section by subclassing :class:`Plan` in its package (``SegmentationPlan`` adds ``segmentation:``),
and the task registry says which class reads a plan of a given task. Unknown keys, values of the wrong type,
non-finite numbers and numbers outside their range are errors naming the key, so a typo in ``--set`` or an
edited ``plan.yaml`` is caught, never saved or trained on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medlens.core.errors import ConfigError

PLAN_VERSION = 2


class Section(BaseModel):
    """A plan section: unknown keys, NaN and infinity are refused; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataPlan(Section):
    input_size: list[int] = Field(description="spatial size fed to the network, per axis")
    channels: int = Field(1, ge=1, le=64, description="input channels (gray repeated / colour averaged to match)")
    normalization: Literal["zscore", "minmax", "none"] = "zscore"
    mean: float = Field(0.0, description="intensity subtracted after clipping")
    std: float = Field(1.0, gt=0, description="intensity divisor after subtracting the mean")
    clip: list[float] | None = Field(None, description="[low, high] intensity clip before normalising")
    cache: Literal["memory", "none"] = Field(
        "memory", description="memory: read and prepare every case once; none: read each case when it is drawn"
    )
    fit: Literal["resize", "pad"] = Field(
        "resize",
        description="how an image meets input_size: resize (resample to it), or pad (pad or crop about the centre, "
        "no resampling, so sizes in the image keep their meaning)",
    )

    @model_validator(mode="after")
    def _check_range(self) -> DataPlan:
        if not self.input_size or any(s < 1 or s > 16384 for s in self.input_size):
            raise ValueError(f"input_size values must be in [1, 16384], got {self.input_size}")
        if self.clip is not None and (len(self.clip) != 2 or self.clip[0] > self.clip[1]):
            raise ValueError(f"clip must be [low, high] with low <= high, got {self.clip}")
        if self.normalization == "minmax" and self.clip is None:
            raise ValueError("normalization minmax needs clip: [low, high], the range mapped to [0, 1]")
        return self


class AugmentPlan(Section):
    """Random changes to training images. Every task reads these keys with the same meaning."""

    flip_axes: list[int] = Field(default_factory=list, description="spatial axes mirrored at random (chance 1/2 each)")
    rotate_degrees: float = Field(0.0, ge=0, le=180, description="rotation drawn from [-r, r] degrees (per axis in 3D)")
    scale: list[float] = Field(default_factory=lambda: [1.0, 1.0], description="zoom factor drawn from [low, high]")
    translate: float = Field(0.0, ge=0, le=1, description="shift drawn from [-t, t] times the image size")
    brightness: float = Field(0.0, ge=0, le=10, description="intensities shifted by [-b, b] standard deviations")
    contrast: float = Field(0.0, ge=0, lt=1, description="intensities scaled about their mean by [1 - c, 1 + c]")
    gamma: float = Field(
        0.0, ge=0, lt=1, description="gamma drawn from [1 - g, 1 + g], on intensities rescaled to [0, 1] and back"
    )
    noise_std: float = Field(0.0, ge=0, le=10, description="Gaussian noise, in standard deviations of the image")
    spatial_probability: float = Field(
        0.8, ge=0, le=1, description="chance that the random rotation/zoom/shift is applied to a training sample"
    )
    intensity_probability: float = Field(
        1.0, ge=0, le=1, description="chance that each intensity change (brightness, contrast, gamma, noise) is applied"
    )
    why: str = ""

    @model_validator(mode="after")
    def _check(self) -> AugmentPlan:
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 10:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high <= 10, got {self.scale}")
        return self


class ModelPlan(Section):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: str | None = Field(None, description="local checkpoint (state dict, timm, safetensors)")
    init: str | None = Field(
        None,
        description="a 'medlens pretrain' folder or a weights file whose tensors start the network where name and "
        "shape match (the self-supervised encoder); what was loaded and skipped is reported in the run",
    )
    dropout: float = Field(0.0, ge=0, lt=1)
    why: str = ""


class OptimPlan(Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = Field(0.03, ge=0, lt=1)
    layer_decay: float | None = Field(
        None,
        gt=0,
        le=1,
        description="layer-wise learning-rate decay: a stage d stages before the head learns at lr * layer_decay^d; "
        "none = one rate for all",
    )


class PrivacyPlan(Section):
    """Differential privacy (DP-SGD with Opacus, :mod:`medlens.training.privacy`); absent = no privacy."""

    epsilon: float = Field(gt=0, le=1000, description="the privacy budget epsilon the whole run may spend")
    delta: float | None = Field(
        None, gt=0, lt=1, description="delta; none = min(1e-5, 1/(10 n_train)), the value used is recorded"
    )
    max_grad_norm: float = Field(1.0, gt=0, le=1e6, description="each image's gradient is clipped to this L2 norm")
    accountant: Literal["rdp", "prv"] = Field("rdp", description="Opacus accountant that calibrates and counts")


class TrainPlan(Section):
    batch_size: int = Field(64, ge=1, le=65536, description="images per optimiser step, over all processes")
    batch_rule: Literal["global"] = Field(
        "global",
        description="training in P processes (--devices/--nodes): batch_size and optim.lr stay those of one step over "
        "all processes, each process takes batch_size/P images (medlens.training.distributed)",
    )
    max_epochs: int = Field(50, ge=1, le=100000)
    budget_minutes: float | None = Field(None, gt=0, description="wall-clock budget per member; the schedule anneals")
    early_stopping_patience: int | None = Field(15, ge=1)
    monitor: str = Field("val_auc", description="the validation figure that picks the best checkpoint")
    monitor_mode: Literal["max", "min"] = Field("max", description="whether a higher or lower monitor is better")
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    num_workers: int = Field(0, ge=0, le=256)
    seed: int = Field(0, ge=0)
    val_every_epochs: int = Field(1, ge=1)
    explain_images: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="validation images on which training scores the explanation methods to choose the bundle's "
        "default; none = the task's own number, 0 = not scored (the task's first method, said so)",
    )
    finetune: Literal["auto", "full", "linear", "partial", "lora"] = Field(
        "auto",
        description="which weights learn: full, linear (the head only), partial (the first freeze_stages stages "
        "frozen), lora (peft adapters, merged before saving); auto: full from scratch, else chosen from the number "
        "of labelled training images (medlens.training.finetuning.choose_mode)",
    )
    freeze_stages: int | None = Field(
        None, ge=0, le=1000, description="partial: stages frozen from the input on; none = half of them"
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="lora: rank of the adapters")
    lora_alpha: int = Field(16, ge=1, le=4096, description="lora: the adapters' scale is lora_alpha / lora_rank")
    privacy: PrivacyPlan | None = Field(None, description="DP-SGD (train.privacy.epsilon=8); none = no privacy")


class Plan(Section):
    """Everything training needs, besides the data itself. Tasks subclass it to add their own section."""

    version: int = PLAN_VERSION
    task: str
    spatial_dims: Literal[2, 3]
    class_names: list[str]
    data: DataPlan
    augment: AugmentPlan
    model: ModelPlan
    optim: OptimPlan
    train: TrainPlan
    notes: list[str] = Field(default_factory=list, description="why the rules chose what they chose")

    @model_validator(mode="after")
    def _check_axes(self) -> Plan:
        if len(self.data.input_size) != self.spatial_dims:
            raise ValueError(f"data.input_size {self.data.input_size} needs {self.spatial_dims} sizes (spatial_dims)")
        bad = [a for a in self.augment.flip_axes if not 0 <= a < self.spatial_dims]
        if bad:
            raise ValueError(f"augment.flip_axes {bad}: spatial axes are 0..{self.spatial_dims - 1}")
        return self

    @classmethod
    def upgrade(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Turn a version-1 plan mapping into version 2 (tasks extend this for their own sections).

        Version 2 gave every key one meaning: ``augment.probability`` became ``spatial_probability`` and
        ``intensity_probability`` (each task's old use of it kept, see :meth:`legacy_intensity_probability`);
        ``train.loss`` and ``train.ema_decay`` were read by nothing and are gone; ``train.class_weights`` and
        ``train.label_smoothing`` belong to classification now (which moves them before this runs);
        ``train.monitor_mode`` is new; sections of other tasks, written as ``null``, are dropped.
        """
        augment = raw.get("augment") or {}
        if "probability" in augment:
            p = augment.pop("probability")
            augment.setdefault("spatial_probability", p)
            augment.setdefault("intensity_probability", cls.legacy_intensity_probability(p))
        train = raw.get("train") or {}
        for gone in ("loss", "ema_decay", "class_weights", "label_smoothing"):  # the last two: classification's now
            train.pop(gone, None)
        return {k: v for k, v in raw.items() if v is not None or k in cls.model_fields}

    @classmethod
    def legacy_intensity_probability(cls, probability: float) -> float:
        """How often a version-1 plan of this task applied intensity changes (every time, by default)."""
        return 1.0

    def with_seed(self, seed: int) -> Plan:
        """A copy with ``train.seed`` set."""
        return self.model_copy(update={"train": self.train.model_copy(update={"seed": seed})})

    def without_pretrained(self) -> Plan:
        """A copy that builds the network without loading ``model.pretrained`` or ``model.init`` (weights come
        from elsewhere)."""
        return self.model_copy(update={"model": self.model.model_copy(update={"pretrained": None, "init": None})})


def migrate(raw: dict[str, Any], plan_type: type[Plan]) -> dict[str, Any]:
    """Bring a plan written by an earlier medlens to the current keys (see :meth:`Plan.upgrade`), so old bundles
    load; a current plan is returned as it is."""
    if not isinstance(raw, dict):
        return raw
    try:
        version = int(raw.get("version", 1) or 1)
    except (TypeError, ValueError):
        raise ConfigError("version", f"{raw.get('version')!r} is not a plan version number") from None
    if version >= PLAN_VERSION:
        return raw
    out = plan_type.upgrade({k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()})
    out["version"] = PLAN_VERSION
    return out
