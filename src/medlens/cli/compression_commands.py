"""``medlens distill`` and ``medlens prune``: smaller models from a trained run (``export --quantize int8`` is the
third way, in ``model_commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medlens.cli.model_commands import OVERWRITE, parse_duration


def distill_cmd(
    run_dir: Path = typer.Argument(..., help="The teacher: a trained run (or its bundle); its ensemble is distilled."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create for the student."),
    student: str | None = typer.Option(
        None,
        "--student",
        help="Student network from 'medlens models' (default: the largest ResNet of a fixed list with at least 3x "
        "fewer FLOPs than the teacher ensemble).",
    ),
    unlabeled: list[Path] = typer.Option(
        [],
        "--unlabeled",
        help="More images for the teacher to label: a dataset folder (its training and unlabeled images) or a "
        "folder of images; repeat for several. The teacher dataset's own unlabeled split (import --label-fraction) "
        "is used as well, unless --no-dataset-unlabeled.",
    ),
    dataset_unlabeled: bool = typer.Option(
        True,
        "--dataset-unlabeled/--no-dataset-unlabeled",
        help="Use the teacher dataset's unlabeled split (the training images kept without labels) too.",
    ),
    budget: str = typer.Option("10m", "--budget", help="Student training time, e.g. 90s, 10m."),
    temperature: float = typer.Option(4.0, "--temperature", help="Softening temperature T of the teacher and student."),
    soft_weight: float = typer.Option(
        0.7, "--soft-weight", help="Weight of the teacher term (T^2 x KL); the labels' loss gets 1 minus this."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field of the student's plan, e.g. --set optim.lr=0.002."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Distil a run's ensemble into one smaller network (knowledge distillation).

    The student learns the teacher's softened probabilities (every member's softmax at temperature T, averaged) on
    the run's training images, the dataset's unlabeled split (import --label-fraction) and any --unlabeled images,
    plus the labels where there are:
    loss = soft_weight x T^2 x KL(teacher || student) + (1 - soft_weight) x cross-entropy. The result is an ordinary
    run folder (predict, evaluate, export work on it) whose model card names the teacher. Classification only.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.workflows.compression import distill

    with progress_bars() as progress:
        summary = distill(
            run_dir, out, student=student, unlabeled=unlabeled, dataset_unlabeled=dataset_unlabeled,
            budget_minutes=parse_duration(budget),
            temperature=temperature, soft_weight=soft_weight, overrides=set_, overwrite=overwrite, progress=progress,
        )  # fmt: skip
    made = summary["made_from"]
    Console().print(
        f"student ({made['student_gflops']:.3g} GFLOPs, {made['flops_ratio']:.1f}x fewer than the teacher): best "
        f"{summary['monitor']} {_number(summary['val_monitor_mean'])}; bundle: {Path(out) / 'bundle'}\n"
        f"trained on {made['labelled_images']} labelled and {made['unlabeled_images']} unlabeled images "
        f"({made['unlabeled_from_dataset']} from the dataset's unlabeled split, {made['unlabeled_from_inputs']} from "
        "--unlabeled)"
    )


def prune_cmd(
    run_dir: Path = typer.Argument(..., help="A trained run (or its bundle); every member is pruned."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create for the pruned model."),
    ratio: float = typer.Option(0.5, "--ratio", help="Share of the channels removed in each prunable layer (0-1)."),
    finetune_budget: str = typer.Option("5m", "--finetune-budget", help="Fine-tuning time per member, e.g. 90s, 5m."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field of the fine-tuning plan, e.g. --set optim.lr=1e-4."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Prune channels from a trained model (structured pruning with torch-pruning), then fine-tune it briefly.

    Each member loses --ratio of the channels of every convolution and linear layer (the output layer is kept), the
    channels ranked by the L2 norm of their weights; channels tied by residual additions or concatenations go
    together. A pruned network is smaller and faster in PyTorch and in its ONNX export (unlike unstructured
    sparsity). Each member is then trained for --finetune-budget with the run's own plan. The result is an ordinary
    run folder; its bundle records the pruned shapes.
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.workflows.compression import prune

    with progress_bars() as progress:
        summary = prune(
            run_dir, out, ratio=ratio, finetune_minutes=parse_duration(finetune_budget), overrides=set_,
            overwrite=overwrite, progress=progress,
        )  # fmt: skip
    made = summary["made_from"]
    Console().print(
        f"pruned {made['parameters_before']:,} -> {made['parameters_after']:,} parameters; after fine-tuning best "
        f"{summary['monitor']} {_number(summary['val_monitor_mean'])}; bundle: {Path(out) / 'bundle'}"
    )


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_cmd)
    app.command("prune")(prune_cmd)
