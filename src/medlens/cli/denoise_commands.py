"""``medlens denoise train|apply|evaluate``: thin adapters over :mod:`medlens.denoising`."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.model_commands import OVERWRITE, parse_duration

denoise_app = typer.Typer(
    help="Denoising autoencoders: train on a dataset's clean images with simulated noise (Gaussian, Poisson as"
    " for low-dose CT/X-ray), apply to images in their own geometry and format, and measure PSNR and SSIM"
    " against the noisy input, non-local means and total variation.",
    no_args_is_help=True,
)


@denoise_app.command("train")
def train_cmd(
    dataset_dir: Path = typer.Argument(..., help="A medlens dataset (2D or 3D, any task); its train split is used."),
    out: Path = typer.Option(..., "--out", "-o", help="Denoiser folder to create (denoiser.json, weights.pt)."),
    noise: str = typer.Option(
        "gaussian:0.05,poisson:50",
        "--noise",
        help="Simulated noise on images scaled to [0, 1]: gaussian:SIGMA (a fraction of the intensity range),"
        " poisson:PHOTONS (photon count at the brightest value; lower is noisier), or both, comma-separated.",
    ),
    model: str = typer.Option(
        "unet", "--model", help="unet (MONAI BasicUNet, residual) or autoencoder (MONAI AutoEncoder, no skips)."
    ),
    budget: str = typer.Option("20m", "--budget", help="Training time, e.g. 90s, 20m, 1h."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps (default: budget)."),
    seed: int = typer.Option(0, "--seed", help="Seed of patches, noise and weights."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Train a denoiser on the clean images of DATASET with simulated noise."""
    from medlens.cli.progress import progress_bars
    from medlens.denoising.training import train_denoiser

    with progress_bars() as progress:
        trained = train_denoiser(
            dataset_dir, out, noise, model=model, budget_minutes=parse_duration(budget), max_steps=max_steps,
            seed=seed, overwrite=overwrite, progress=progress,
        )  # fmt: skip
    facts = trained.info.training
    typer.echo(
        f"denoiser written to {out} ({facts['steps']} steps in {facts['seconds']} s, noise {trained.info.noise})"
    )


@denoise_app.command("apply")
def apply_cmd(
    denoiser_dir: Path = typer.Argument(..., help="A denoiser folder from 'medlens denoise train'."),
    inputs: list[Path] = typer.Argument(..., help="Image files or folders (PNG, NIfTI, DICOM files and series...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create: one denoised image per input."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Denoise images; each is written in its own format and geometry (unreadable ones listed in skipped.csv)."""
    from medlens.cli.progress import progress_bars
    from medlens.denoising.application import apply_denoiser

    with progress_bars() as progress:
        run = apply_denoiser(denoiser_dir, inputs, out, overwrite=overwrite, progress=progress)
    typer.echo(f"{len(run.written)} image(s) denoised into {out}" + (f"; {len(run.skipped)} skipped (skipped.csv)"
                                                                      if run.skipped else ""))  # fmt: skip


@denoise_app.command("evaluate")
def evaluate_cmd(
    denoiser_dir: Path = typer.Argument(..., help="A denoiser folder from 'medlens denoise train'."),
    dataset_dir: Path = typer.Option(..., "--dataset", help="The dataset whose test split is measured."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (denoise.json, denoise.png)."),
    split: str = typer.Option("test", "--split", help="Split to measure: test, val, train or all."),
    bm3d: bool = typer.Option(False, "--bm3d", help="Also run BM3D (bm3d package; 2D; about 1-2 s per image)."),
    limit: int | None = typer.Option(None, "--limit", help="Measure only the first N images of the split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise and the bootstrap."),
    overwrite: bool = OVERWRITE,
) -> None:
    """PSNR and SSIM of the noisy input, the denoiser, non-local means and total variation, with 95% intervals."""
    from medlens.cli.progress import progress_bars
    from medlens.denoising.evaluation import evaluate_denoiser

    with progress_bars() as progress:
        result = evaluate_denoiser(
            denoiser_dir, dataset_dir, out, split=split, bm3d=bm3d, limit=limit, seed=seed, overwrite=overwrite,
            progress=progress,
        )  # fmt: skip
    for name, scores in result["methods"].items():
        psnr, ssim = scores["psnr"]["value"], scores["ssim"]["value"]
        typer.echo(f"{name:12s} PSNR {psnr:6.2f} dB  SSIM {ssim:.3f}")
    typer.echo(f"written to {out / 'denoise.json'}")


def register(app: typer.Typer) -> None:
    app.add_typer(denoise_app, name="denoise")
