"""Smaller models from a trained run, each an ordinary run folder with a bundle: ``medlens.distill(...)`` (a student
network trained on the run's ensemble, the teacher) and ``medlens.prune(...)`` (channels removed from every member
with torch-pruning, then a short fine-tune). Quantisation is an export option (:mod:`medlens.workflows.quantization`).

Distillation is a task hook (:meth:`medlens.tasks.base.Task.distiller`: classification provides it); pruning needs
nothing of a task beyond its own training loop, so it serves every task whose networks torch-pruning can trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medlens.core.errors import ConfigError, InputError
from medlens.core.image import Image
from medlens.core.outputs import check_output_folder, output_folder
from medlens.core.progress import ProgressFn, tracked
from medlens.data.dataset import load_dataset
from medlens.models.bundle import Bundle
from medlens.tasks.base import load_bundle
from medlens.training.members import plan_members
from medlens.training.overrides import apply_overrides
from medlens.training.plan import ModelPlan, Plan
from medlens.workflows.evaluation import run_dataset

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 4.0
DEFAULT_SOFT_WEIGHT = 0.7
MIN_FLOPS_RATIO = 3.0
STEM_KWARGS = ("stem_stride", "stem_pool")  # a MONAI ResNet student keeps its teacher's stem (the input's scale)
# Default students, largest first: the first with at most a third of the teacher ensemble's FLOPs is chosen.
STUDENTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "image": [
        ("monai_resnet18", {"widen_factor": 1.0}),
        ("monai_resnet10", {"widen_factor": 1.0}),
        ("monai_resnet18", {"widen_factor": 0.5}),
        ("monai_resnet10", {"widen_factor": 0.5}),
        ("monai_resnet18", {"widen_factor": 0.25}),
        ("monai_resnet10", {"widen_factor": 0.25}),
        ("monai_resnet10", {"widen_factor": 0.125}),
        ("monai_resnet10", {"widen_factor": 0.0625}),
    ],
}


def ensemble_gflops(bundle: Bundle) -> float:
    """Forward GFLOPs of one input through every member of ``bundle``."""
    from medlens.models.cost import forward_gflops

    shape = [bundle.plan.data.channels, *bundle.plan.data.input_size]
    return sum(forward_gflops(net, shape) for net in bundle.networks())


def student_plan(
    teacher: Bundle, student: str | None, budget_minutes: float, overrides: Sequence[str]
) -> tuple[Plan, float, float]:
    """The student's plan (the teacher's data, augmentation and training sections; the student's network), its
    forward GFLOPs and the teacher ensemble's.

    Without ``student``, the largest of :data:`STUDENTS` with at most a third of the teacher's FLOPs is chosen; a
    MONAI ResNet student of a MONAI ResNet teacher keeps the teacher's stem (stride and pooling).

    Raises:
        ConfigError: when no default student is that small (name one with ``--student``).
    """
    from medlens.models.cost import forward_gflops

    plan = teacher.plan.without_pretrained()
    shape = [plan.data.channels, *plan.data.input_size]
    teacher_gflops = ensemble_gflops(teacher)
    candidates = [(student, {})] if student else STUDENTS.get(teacher.task.model_output, [])
    if not candidates:
        raise ConfigError("--student", f"no default student for {plan.task} models; name one (see 'medlens models')")
    chosen: tuple[Plan, float] | None = None
    stem = {k: v for k, v in plan.model.kwargs.items() if k in STEM_KWARGS}
    for name, kwargs in candidates:
        same_family = name.startswith("monai_resnet") and plan.model.name.startswith("monai_resnet")
        model = ModelPlan(name=name, kwargs={**(stem if same_family else {}), **kwargs}, dropout=plan.model.dropout)
        candidate = plan.model_copy(update={"model": model})
        candidate = apply_overrides(candidate, [f"train.budget_minutes={budget_minutes}", *overrides])
        try:
            gflops = forward_gflops(teacher.task.build_network(candidate), shape)
        except ConfigError:
            if student:
                raise
            continue  # a default student this data's dimensionality cannot build
        if student or teacher_gflops / max(gflops, 1e-12) >= MIN_FLOPS_RATIO * (1 - 1e-6):  # one member: 3x of 3
            chosen = (candidate, gflops)
            break
    if chosen is None:
        raise ConfigError(
            "--student", f"no default student has a third of the teacher's {teacher_gflops:.3g} GFLOPs; name one"
        )
    candidate, gflops = chosen
    why = (
        f"distilled student: {gflops:.3g} GFLOPs per image, {teacher_gflops / max(gflops, 1e-12):.1f}x fewer than "
        f"the teacher's {len(teacher.members)}-member ensemble ({teacher_gflops:.3g} GFLOPs)"
    )
    candidate = candidate.model_copy(
        update={"model": candidate.model.model_copy(update={"why": why}), "notes": [*candidate.notes, why]}
    )
    return candidate, gflops, teacher_gflops


def unlabeled_images(sources: Sequence[str | Path], progress: ProgressFn | None = None) -> list[Image]:
    """Images without labels: the training and unlabeled splits of each dataset folder (its labels ignored), every
    image file under each other folder (or the file itself)."""
    from medlens.data.sources import is_image_file
    from medlens.io import read_image
    from medlens.training.images import case_images

    images: list[Image] = []
    for source in map(Path, sources):
        if (source / "dataset.yaml").is_file():
            data = load_dataset(source)
            images += list(case_images(data, data.split("train") + data.unlabeled()))
            continue
        if not source.exists():
            raise InputError(source, "no such file or folder (unlabeled images)")
        files = (
            [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p))
        )
        if not files:
            raise InputError(source, "holds no image file medlens reads (unlabeled images)")
        for path in tracked(files, progress, "reading unlabeled images"):
            image = read_image(path)
            image.meta["source"] = str(path)
            images.append(image)
    return images


def distill(
    run_dir: str | Path,
    out: str | Path,
    *,
    student: str | None = None,
    unlabeled: Sequence[str | Path] = (),
    dataset_unlabeled: bool = True,
    budget_minutes: float = 10.0,
    temperature: float = DEFAULT_TEMPERATURE,
    soft_weight: float = DEFAULT_SOFT_WEIGHT,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train a small student on the run's bundle (the teacher: every member's softened probabilities, averaged) over
    the run's training images, the dataset's ``unlabeled`` split (the training images ``import --label-fraction``
    kept without labels) and ``unlabeled`` images, plus the labels where there are; write an ordinary run.

    Args:
        run_dir: the teacher's run folder (or its bundle; the dataset comes from the run's ``run.yaml``).
        out: the student's run folder.
        student: a registry network (default: the largest of :data:`STUDENTS` with >= 3x fewer FLOPs).
        unlabeled: more images: dataset folders (their training and unlabeled splits) and folders or files of
            images, labels ignored.
        dataset_unlabeled: also use the teacher dataset's own ``unlabeled`` split (when it has one).
        budget_minutes: the student's training budget.
        temperature: the softening temperature T.
        soft_weight: weight of the teacher term; the labels' term has ``1 - soft_weight``.
        overrides: ``key=value`` changes to the student's plan (``model.kwargs.widen_factor=0.5``).
        overwrite: replace an existing output folder that medlens made.
        progress: reports reading and training.

    Example:
        >>> import medlens
        >>> medlens.distill("runs/pneumonia", "runs/pneumonia-small", budget_minutes=10)  # doctest: +SKIP
    """
    from medlens.training.derived import fit_derived
    from medlens.training.images import case_images

    if temperature <= 0:
        raise ConfigError("--temperature", f"must be positive, got {temperature:g}")
    if not 0 <= soft_weight <= 1:
        raise ConfigError("--soft-weight", f"must be from 0 to 1, got {soft_weight:g}")
    teacher = load_bundle(run_dir)
    task = teacher.task
    dataset = load_dataset(run_dataset(Path(run_dir)))
    inputs = [("teacher run folder", Path(run_dir)), ("dataset", dataset.root), *(("unlabeled", p) for p in unlabeled)]
    check_output_folder(out, overwrite=overwrite, inputs=inputs)  # refused before any work; checked again on writing
    plan, gflops, teacher_gflops = student_plan(teacher, student, budget_minutes, overrides)
    with output_folder(out, kind="run", overwrite=overwrite, inputs=inputs) as tmp:
        member = plan_members(dataset, seeds=1, seed=plan.train.seed)[0]
        prepared = task.prepare(dataset, plan, member.train + member.val, progress)
        given = {Path(p).resolve() for p in unlabeled}
        own = dataset.unlabeled() if dataset_unlabeled and dataset.root.resolve() not in given else []
        extra = [*case_images(dataset, own, progress), *unlabeled_images(unlabeled, progress)]
        recipe = task.distiller(
            teacher, plan, prepared, member, extra, temperature=temperature, soft_weight=soft_weight
        )
        made_from = {
            "method": "distillation",
            "teacher": str(teacher.root.resolve()),
            "teacher_members": len(teacher.members),
            "teacher_model": teacher.plan.model.name,
            "teacher_gflops": teacher_gflops,
            "student_gflops": gflops,
            "flops_ratio": teacher_gflops / max(gflops, 1e-12),
            "temperature": temperature,
            "soft_weight": soft_weight,
            "labelled_images": len(member.train),
            "unlabeled_images": len(extra),
            "unlabeled_from_dataset": len(own),
            "unlabeled_from_inputs": len(extra) - len(own),
            "loss": recipe.loss,
        }
        line = (
            f"Distilled from {teacher.name} ({len(teacher.members)}-member {teacher.plan.model.name} ensemble, "
            f"{teacher_gflops:.3g} GFLOPs per image) into {plan.model.name} ({gflops:.3g} GFLOPs, "
            f"{made_from['flops_ratio']:.1f}x fewer); loss {recipe.loss}"
        )
        summary = fit_derived(
            task, dataset, plan, tmp, [member], prepared,
            fits=[(recipe.module, (recipe.train, recipe.val))],
            build=lambda state: _loaded(task.build_network(plan), state),
            made_from=made_from, card_lines=[line], progress=progress,
        )  # fmt: skip
    log.info("distilled %s into %s (%.1fx fewer FLOPs)", teacher.name, plan.model.name, made_from["flops_ratio"])
    return summary


def prune(
    run_dir: str | Path,
    out: str | Path,
    *,
    ratio: float = 0.5,
    finetune_minutes: float = 5.0,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Remove ``ratio`` of the channels of every member of the run's bundle (torch-pruning, L2 magnitude of each
    coupled group of channels, the output layer kept whole), fine-tune each pruned member briefly with the task's own
    training, and write an ordinary run whose bundle records the pruned shapes. The members are fine-tuned on the
    dataset's fixed train and val splits (seeds 0, 1, ...), also when the run's members were folds.

    Args:
        run_dir: the run folder (or its bundle; the dataset comes from the run's ``run.yaml``).
        out: the pruned run's folder.
        ratio: share of channels removed in each prunable layer (0 < ratio < 1).
        finetune_minutes: fine-tuning budget per member.
        overrides: ``key=value`` changes to the fine-tuning plan (``train.max_epochs=3``, ``optim.lr=1e-4``).
        overwrite: replace an existing output folder that medlens made.
        progress: reports reading and fine-tuning.

    Example:
        >>> import medlens
        >>> medlens.prune("runs/pneumonia", "runs/pneumonia-pruned", ratio=0.5)  # doctest: +SKIP
    """
    from medlens.models.pruning import fit_shapes, parameter_count, prune_network
    from medlens.training.derived import fit_derived

    if not 0 < ratio < 1:
        raise ConfigError("--ratio", f"must be between 0 and 1, got {ratio:g}")
    bundle = load_bundle(run_dir)
    task = bundle.task
    dataset = load_dataset(run_dataset(Path(run_dir)))
    check_output_folder(out, overwrite=overwrite, inputs=[("run folder", Path(run_dir))])
    # every surviving weight goes on learning (the auto rule would say "from scratch": the plan has no init)
    plan = apply_overrides(
        bundle.plan.without_pretrained(),
        [f"train.budget_minutes={finetune_minutes}", "train.finetune=full", *overrides],
    )
    shape = [plan.data.channels, *plan.data.input_size]
    before = sum(parameter_count(net) for net in bundle.networks())
    pruned = [prune_network(net, shape, ratio, len(plan.class_names)) for net in bundle.networks()]
    after = sum(parameter_count(net) for net in pruned)
    with output_folder(out, kind="run", overwrite=overwrite, inputs=[("run folder", Path(run_dir))]) as tmp:
        members = plan_members(dataset, seeds=len(pruned), seed=plan.train.seed)
        prepared = task.prepare(dataset, plan, members[0].train + members[0].val, progress)
        fits = [
            (lambda budget, net=net, m=m: _with_network(task.module(plan.with_seed(m.seed), budget), net),
             task.loaders(plan.with_seed(m.seed), prepared, m))
            for net, m in zip(pruned, members, strict=True)
        ]  # fmt: skip
        made_from = {
            "method": "pruning",
            "run": str(bundle.root.resolve()),
            "ratio": ratio,
            "importance": "L2 magnitude of each group of coupled channels (torch-pruning GroupMagnitudeImportance)",
            "parameters_before": before,
            "parameters_after": after,
            "finetune_minutes": finetune_minutes,
        }
        line = (
            f"Pruned from {bundle.name}: {ratio:.0%} of the channels of each layer removed by L2 magnitude "
            f"(torch-pruning), {before:,} -> {after:,} parameters, then fine-tuned for at most {finetune_minutes:g} min"
        )
        summary = fit_derived(
            task, dataset, plan, tmp, members, prepared, fits=fits,
            build=lambda state: _loaded(fit_shapes(task.build_network(plan), state), state),
            made_from=made_from, card_lines=[line], progress=progress, pruned=True,
        )  # fmt: skip
    log.info("pruned %s: %d -> %d parameters", bundle.name, before, after)
    return summary


def _loaded(net: nn.Module, state: dict[str, Any]) -> nn.Module:
    net.load_state_dict(state)
    return net


def _with_network(module: Any, net: nn.Module) -> Any:
    """The task's Lightning module training ``net`` (a pruned network) instead of the one it built."""
    module.net = net.train()
    return module
