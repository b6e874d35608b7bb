"""``medlens pretrain``: self-supervised pretraining of a task's encoder on images without labels."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.model_commands import OVERWRITE, parse_duration


def pretrain_cmd(
    inputs: list[Path] = typer.Argument(
        ...,
        help="Dataset folders (their training and unlabeled images; never validation or test) and folders of "
        "PNG, JPEG, TIFF, DICOM or NIfTI images (labels ignored); all 2D or all 3D.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Pretrain folder to create (encoder.safetensors, pretrain.yaml)."
    ),
    method: str = typer.Option(
        "simclr",
        "--method",
        help="simclr, byol or dino (lightly's heads and losses), or mae: a masked autoencoder for ViT backbones "
        "(vit_tiny, vit_small, monai_vit 2D/3D, unetr's encoder; lightly's timm MAE or MONAI's MaskedAutoEncoderViT).",
    ),
    backbone: str | None = typer.Option(
        None,
        "--backbone",
        help="A registered image network ('medlens models'); default: the network the dataset's plan (or the "
        "planning rules) give, so the encoder loads into the task's network.",
    ),
    budget: str = typer.Option("30m", "--budget", help="Training time, e.g. 5m, 90s, 1h."),
    epochs: int = typer.Option(200, "--epochs", min=1, help="Stop earlier after this many passes over the images."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=2, help="Images per step (default 128 2D, 64 3D)."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Peak learning rate (AdamW, cosine to zero)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the views, batches and heads."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Pretrain the task's encoder without labels (SimCLR, BYOL or DINO) with medical-image views: random resized
    crop, flips, small rotations, intensity window, gamma, noise and blur (no colour jitter); or a ViT as a masked
    autoencoder (--method mae --backbone vit_tiny): 75% of the patches hidden, their pixels predicted.

    Then start a task's network from it with 'medlens train DATASET --set model.init=OUT': the tensors that match
    by name and shape are loaded, and the run lists which were loaded and skipped (init_weights.json).
    """
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.workflows.pretraining import pretrain

    with progress_bars() as progress:
        record = pretrain(
            inputs,
            out,
            method=method,
            backbone=backbone,
            budget_minutes=parse_duration(budget),
            max_epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
        )
    Console().print(
        f"[bold]{record['method']}[/] pretrained {record['backbone']['name']} ({record['spatial_dims']}D, "
        f"{record['channels']} channel(s), input {record['input_size']}) on {record['images']['total']} images: "
        f"{record['steps']} steps, {record['epochs']} epochs in {record['seconds']:.0f} s, loss {record['final_loss']}"
        f"\nwritten to {out}; use it with --set model.init={out}"
    )


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain_cmd)
