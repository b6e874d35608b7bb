"""Explain a model's answers and measure how faithful the explanations are: ``medlens.explain(RUN, inputs, out)`` and
``medlens.score_explanations(RUN, out, split="test")``.

``explain`` writes, per input, the map over the picture (PNG), the map in the input's geometry (NIfTI for volumes,
npz for pictures), a DICOM Secondary Capture for DICOM input and a JSON (see :mod:`medlens.explanations.explanation`),
with ``explanations.csv`` (one row per input) and ``skipped.csv`` (inputs that could not be explained, and why).

``score_explanations`` explains images of a dataset split with every method of the task and writes
``faithfulness.json`` (deletion and insertion AUC with 95% intervals, randomisation similarity, the random-order
baseline and the default its rule picks: :mod:`medlens.explanations.faithfulness`) and ``scoring.json`` (which images,
the time per image of each method as a ratio to one prediction, the rule and why).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.core.errors import ConfigError, InputError, MedlensError
from medlens.core.outputs import output_folder, unique_stem, write_json, write_table
from medlens.core.progress import ProgressFn, report
from medlens.explanations.explanation import check_method, default_method, explain_image
from medlens.explanations.faithfulness import RULE, STEPS, Faithfulness, score_methods
from medlens.models.bundle import read_input
from medlens.tasks.base import load_bundle

log = logging.getLogger(__name__)


@dataclass
class ExplanationRun:
    """What ``explain`` did: the method, each explanation (as written) and each skipped input with its reason."""

    out: Path
    method: str
    explanations: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def explain(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    method: str | None = None,
    target: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ExplanationRun:
    """Explain the model's answer for every input; write maps, overlays (and DICOM captures) into ``out``.

    Args:
        run_dir: a run folder or a bundle folder.
        inputs: image files and folders (as ``predict`` takes them).
        out: the folder to create (refused when it is, holds or lies inside an input or the run).
        method: ``gradcam``, ``gradcam++``, ``scorecam``, ``eigencam``, ``occlusion`` or ``integrated-gradients``
            (those the task supports); default: the bundle's (chosen at training by faithfulness; the task's first
            for a bundle trained before that).
        target: the class to explain (default: the model's answer for each input).
        overwrite: replace an existing output folder that medlens made.
        progress: called per input.

    Example:
        >>> import medlens
        >>> run = medlens.explain("runs/pneumonia", ["xray.png"], "explanations")  # doctest: +SKIP
        >>> run.explanations[0]["files"]["overlay"]  # doctest: +SKIP
        'xray_integrated-gradients.png'
    """
    from medlens.workflows.prediction import expand_inputs

    bundle = load_bundle(run_dir)
    bundle.networks()
    name = check_method(bundle, method or default_method(bundle))
    paths = expand_inputs(inputs, bundle.plan.spatial_dims)
    guarded = [("input", Path(p)) for p in inputs] + [("run folder", Path(run_dir))]
    result = ExplanationRun(Path(out), name)
    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    with output_folder(out, kind="explanations", overwrite=overwrite, inputs=guarded) as tmp:
        report(progress, f"explaining ({name})", 0, len(paths))
        for i, path in enumerate(paths, start=1):
            try:
                explanation = explain_image(bundle, read_input(path), name, target)
                files = explanation.save(tmp, unique_stem(path, used))
            except MedlensError as exc:
                reason = exc.problem if isinstance(exc, InputError) and str(exc.path) == str(path) else str(exc)
                result.skipped.append((str(path), reason))
                log.warning("skipped %s: %s", path, reason)
            else:
                entry = explanation.to_dict() | {"files": files}
                result.explanations.append(entry)
                rows.append({k: entry[k] for k in ("source", "method", "target", "score")} | files)
            report(progress, f"explaining ({name})", i, len(paths))
        if not result.explanations:
            first = result.skipped[0]
            raise InputError(first[0], f"nothing could be explained ({len(result.skipped)} skipped; first: {first[1]})")
        write_table(tmp / "explanations.csv", rows)
        if result.skipped:
            write_table(tmp / "skipped.csv", [{"input": p, "reason": r} for p, r in result.skipped])
    return result


def score(
    run_dir: str | Path,
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    split: str = "test",
    methods: Sequence[str] | None = None,
    n_images: int = 100,
    n_bootstrap: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Faithfulness:
    """Measure every method of the task on images of a dataset split; write ``faithfulness.json`` and
    ``scoring.json`` into ``out``.

    Args:
        run_dir: a run folder or a bundle folder.
        out: the folder to create.
        dataset: a dataset of the same task and classes (default: the run's own).
        split: ``test``, ``val``, ``train`` or ``all``.
        methods: the methods to score (default: every method of the task).
        n_images: at most this many images, spread evenly over the split.
        n_bootstrap: resamples for the 95% intervals over images.
        seed: seeds random orders, randomised networks and resamples.
        overwrite: replace an existing output folder that medlens made.
        progress: called per image.

    Example:
        >>> import medlens
        >>> result = medlens.score_explanations("runs/pneumonia", "faithfulness", n_images=50)  # doctest: +SKIP
        >>> result.scores["default"]  # doctest: +SKIP
        'integrated-gradients'
    """
    from medlens.training.images import case_images
    from medlens.workflows.evaluation import split_for

    if n_images < 1:
        raise ConfigError("--images", f"must be at least 1, got {n_images}")
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir)
    bundle.networks()
    chosen_methods = [check_method(bundle, m) for m in (methods or bundle.task.explain_methods)]
    data, cases = split_for(bundle, run_dir, dataset, split)
    cases = cases[:: max(1, len(cases) // n_images)][:n_images]
    guarded = [("run folder", run_dir), ("dataset", data.root)]
    with output_folder(out, kind="faithfulness", overwrite=overwrite, inputs=guarded) as tmp:
        result = score_methods(
            bundle,
            case_images(data, cases),
            chosen_methods,
            n_bootstrap=n_bootstrap,
            seed=seed,
            progress=progress,
            total=len(cases),
        )
        write_json(tmp / "faithfulness.json", result.scores)
        write_json(
            tmp / "scoring.json",
            {
                "model": bundle.name,
                "dataset": {"path": str(data.root.resolve()), "name": data.spec.name, "split": split},
                "n_images": result.n_images,
                "skipped": [{"input": s, "reason": r} for s, r in result.skipped],
                "steps": STEPS,
                "n_bootstrap": n_bootstrap,
                "seed": seed,
                "prediction_seconds_per_image": result.prediction_seconds,
                "timing": result.timing,
                "rule": RULE,
                "why": result.why,
                "bundle_default": bundle.explanation.get("default"),
            },
        )
    return result


score_explanations = score
