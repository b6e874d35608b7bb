"""``medlens synth train | sample | evaluate``: class-conditional generators of a dataset's images, the synthetic
datasets they make, and what those images are worth."""

from __future__ import annotations

from pathlib import Path

import typer

OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output folder (only one medlens made).")
SEED = typer.Option(0, "--seed", help="Random seed (the same seed gives the same result).")
STEPS = typer.Option(50, "--steps", help="DDIM sampling steps of a diffusion generator (more: slower, finer).")
GUIDANCE = typer.Option(
    1.0, "--guidance", help="Classifier-free guidance scale of a diffusion generator (1: none; 2-3: more typical "
    "of each class, twice the time)."
)  # fmt: skip

synth_app = typer.Typer(
    help="Synthetic images: train a class-conditional generator on a 2D classification dataset, sample an "
    "ordinary dataset from it (marked synthetic), and measure what its images are worth against real ones.",
    no_args_is_help=True,
)


@synth_app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="A 2D classification dataset (medlens import); its train split is used."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Generator folder to create (generator.yaml, weights, samples.png)."
    ),
    model: str = typer.Option(
        "diffusion",
        "--model",
        help="diffusion: a small class-conditional DDPM (MONAI DiffusionModelUNet), sampled with DDIM; gan: a "
        "conditional DCGAN generator against MONAI's PatchDiscriminator (faster to sample, rougher images).",
    ),
    budget: str = typer.Option("30m", "--budget", help="Training time: 30m, 90s, 1h, or minutes as a number."),
    steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimisation steps."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per optimisation step."),
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
) -> None:
    """Train a class-conditional generator on the dataset's training images (images of up to 64 px are generated
    at their own size, larger ones at 64 px). Runs on CPU within the budget; writes a grid of samples per class."""
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.generative.training import train_generator

    with progress_bars() as progress:
        generator = train_generator(
            dataset, out, model=model, budget_minutes=parse_minutes(budget), max_steps=steps,  # type: ignore[arg-type]
            batch_size=batch_size, seed=seed, overwrite=overwrite, progress=progress,
        )  # fmt: skip
    stats = generator.spec.training
    Console().print(
        f"{generator.spec.model} generator trained for {stats['steps']} steps ({stats['seconds']} s) on "
        f"{stats['images']} images; written to {out} (see {out / 'samples.png'})",
        markup=False,
        highlight=False,
    )


@synth_app.command("sample")
def sample_cmd(
    generator: Path = typer.Argument(..., help="A generator folder (medlens synth train)."),
    n: int = typer.Option(2000, "--n", help="How many images to generate."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to create (dataset.yaml + manifest.csv)."),
    class_name: str | None = typer.Option(
        None, "--class", help="Only images of this class (default: every class, in the training proportions)."
    ),
    steps: int = STEPS,
    guidance: float = GUIDANCE,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
) -> None:
    """Generate images into an ordinary medlens dataset (train/val split, no test split), marked synthetic in
    dataset.yaml (source.synthetic) and on every manifest row (a 'synthetic' column); 'medlens train' takes it."""
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.generative.sampling import sample_dataset

    with progress_bars() as progress:
        dataset = sample_dataset(
            generator, out, n=n, class_name=class_name, steps=steps, guidance=guidance, seed=seed,
            overwrite=overwrite, progress=progress,
        )  # fmt: skip
    counts = {c: sum(1 for case in dataset.cases if case.target == str(k)) for k, c in enumerate(dataset.spec.classes)}
    Console().print(
        f"{len(dataset.cases)} synthetic images ({', '.join(f'{c}: {v}' for c, v in counts.items())}) written to {out}",
        markup=False,
        highlight=False,
    )


@synth_app.command("evaluate")
def evaluate_cmd(
    generator: Path = typer.Argument(..., help="A generator folder (medlens synth train)."),
    real: Path = typer.Option(..., "--real", help="The real dataset (train, val and test splits; same classes)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create: synthesis.json and samples.png."),
    n: int = typer.Option(2000, "--n", help="Synthetic images to generate for the measurements."),
    label_fraction: float = typer.Option(
        0.1, "--label-fraction", help="Share of real train/val labels in the augmentation comparison."
    ),
    budget: str | None = typer.Option(
        None, "--budget", help="Training time of each of the classifiers (e.g. 2m; default: the plan's)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a plan field of every classifier (key=value)."),
    real_run: Path | None = typer.Option(
        None,
        "--real-run",
        help="A run already trained on the real dataset: used as the train-on-real classifier "
        "and feature extractor, and its plan trains the others.",
    ),
    steps: int = STEPS,
    guidance: float = GUIDANCE,
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
) -> None:
    """Measure a generator on the real test split: AUC of a classifier trained on synthetic images (TSTR) beside one
    trained on real images (TRTR); the AUC gain from adding synthetic images to a fraction of the real labels, with
    a 95% bootstrap interval; Fréchet distance and k-NN precision/recall (k=3) in the real classifier's
    penultimate-layer features; and memorisation (nn_distance_ratio, near-copies of training images). The
    classifiers are trained by 'medlens train' with one plan and budget (four of them, or three with --real-run)."""
    from rich.console import Console

    from medlens.cli.progress import progress_bars
    from medlens.generative.evaluation import evaluate_synthesis

    with progress_bars() as progress:
        result = evaluate_synthesis(
            generator, real, out, n=n, label_fraction=label_fraction,
            budget_minutes=parse_minutes(budget) if budget else None, overrides=list(set_), real_run=real_run,
            steps=steps, guidance=guidance, seed=seed, n_bootstrap=bootstrap, overwrite=overwrite, progress=progress,
        )  # fmt: skip
    console = Console()
    for key in ("trtr_auc", "tstr_auc", "real_fraction_auc", "real_fraction_synthetic_auc", "aug_gain_auc"):
        entry = result[key]
        lo, hi = entry["ci95"]
        interval = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        value = entry["value"]
        console.print(f"{key}: {value:.3f}{interval}" if value is not None else f"{key}: -", highlight=False)
    console.print(
        f"Fréchet distance {result['frechet_distance']:.3g} (held-out real: "
        f"{result['frechet_distance_held_out_real']:.3g});"
        f" precision {result['precision']:.3f}, recall {result['recall']:.3f}; nn_distance_ratio "
        f"{result['nn_distance_ratio']}; written to {out / 'synthesis.json'}",
        markup=False,
        highlight=False,
    )


def parse_minutes(text: str) -> float:
    """``30m`` -> 30, ``90s`` -> 1.5, ``1h`` -> 60, ``2.5`` -> 2.5 (minutes).

    Raises:
        ConfigError: not a duration.
    """
    from medlens.core.errors import ConfigError

    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    number = value[:-1] if scale is not None else value
    try:
        minutes = float(number) * (scale or 1.0)
    except ValueError:
        raise ConfigError("--budget", f"{text!r} is not a duration (30m, 90s, 1h, or minutes)") from None
    if not minutes > 0:
        raise ConfigError("--budget", f"{text!r}: must be positive")
    return minutes


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
