"""A bundle's default explanation method, chosen after training on validation images by the faithfulness score.

What training records in ``bundle.yaml`` (``explanation``)::

    {"default": NAME, "why": "...", "scores": {"methods": {...}, "baselines": {"random": {...}}, "default": NAME,
                                               "n_images": N, "split": "val", "steps": S}}

Training keeps this cheap: at most ``Task.explain_images`` validation images, curves of :data:`TRAINING_STEPS` steps,
200 bootstrap resamples, no prediction timing, and only the methods that are not slow (Score-CAM and occlusion need a
forward pass per feature channel or per patch) or those the task names (``Task.explain_training_methods``:
segmentation leaves out integrated gradients too, 2 x 24 passes of a whole volume with gradients). ``medlens explain
--score`` measures every method, and a user may choose any with ``--method``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from medlens.core.image import Image
from medlens.core.progress import ProgressFn
from medlens.explanations.faithfulness import score_methods
from medlens.explanations.methods import get_method

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

#: steps of the deletion and insertion curves at training (``explain --score`` uses 16)
TRAINING_STEPS = 8
TRAINING_BOOTSTRAP = 200


def training_methods(bundle: Bundle) -> list[str]:
    """The task's methods that training scores: ``Task.explain_training_methods``, or those that are not slow."""
    chosen = bundle.task.explain_training_methods
    if chosen is not None:
        return [m for m in bundle.task.explain_methods if m in chosen]
    return [m for m in bundle.task.explain_methods if not get_method(m).slow]


def choose_on_validation(
    bundle: Bundle, images: Iterable[Image], *, total: int | None = None, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Score the task's cheap methods on ``images`` (validation cases) and return the ``explanation`` mapping."""
    methods = training_methods(bundle)
    result = score_methods(
        bundle, images, methods, n_bootstrap=TRAINING_BOOTSTRAP, steps=TRAINING_STEPS, progress=progress, total=total,
        time_predictions=False,
    )  # fmt: skip
    left_out = [m for m in bundle.task.explain_methods if m not in methods]
    why = f"{result.why}; on {result.n_images} validation image(s)"
    if left_out:
        why += f"; not scored at training (too slow there; measure them with explain --score): {', '.join(left_out)}"
    if result.skipped:
        why += f"; {len(result.skipped)} image(s) could not be explained (first: {result.skipped[0][1]})"
    scores = {**result.scores, "n_images": result.n_images, "split": "val", "steps": TRAINING_STEPS}
    return {"default": result.default, "why": why, "scores": scores}
