"""How faithful an explanation is, measured, and the default method chosen by that measure.

- **Deletion and insertion** (Petsiuk et al. 2018, RISE): the input's pixels (voxels) are removed, i.e. set to the
  explainer's baseline value (the mean intensity), in the order of the map, most important first, and the model's
  score for the target is followed; the area under that curve (fraction removed from 0 to 1, :data:`STEPS` steps,
  trapezoids) is the deletion AUC: lower is better, the map found what the score rests on. Insertion starts from
  the all-baseline image and reveals pixels in the same order: higher is better. Ties in a map are broken at random.
- **The random-order baseline**: the same curves with the pixels in a random order (one seeded permutation per
  image). A map worth looking at beats it: lower deletion, higher insertion.
- **Model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"): the map of the trained network
  is compared with the map, for the same input and target, of networks of the same architecture built afresh with
  random weights (every layer at once). The absolute value of Spearman's rank correlation (scipy) between the two
  maps must be low: a method that draws the same map (or its negative: the paper reports both ways) for a network
  that learned nothing shows the image, not the model. A constant map (which ranks nothing) counts as 0.
- **Intervals**: 95% percentile bootstrap intervals over images (:mod:`medlens.metrics.bootstrap`; the same
  resamples for every method, so methods are compared on the same draws).

The default method (:func:`choose_default`) is the one with the largest insertion minus deletion AUC among the
methods whose randomisation similarity is below 0.5 and whose deletion AUC is below the random order's; when no
method passes both, the best by that difference, and the reason says so.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medlens.core.errors import MedlensError
from medlens.core.image import Image
from medlens.core.progress import ProgressFn, report
from medlens.explanations.explainer import Explainer, randomized_networks
from medlens.explanations.methods import compute_map

if TYPE_CHECKING:
    from medlens.models.bundle import Bundle

log = logging.getLogger(__name__)

#: steps of the deletion and insertion curves (fractions 0, 1/16, ..., 1 of the pixels)
STEPS = 16
#: the randomisation similarity a method must stay below to be chosen as the default
SIMILARITY_LIMIT = 0.5
RULE = (
    "the largest insertion minus deletion AUC among the methods whose randomisation similarity is below "
    f"{SIMILARITY_LIMIT} and whose deletion AUC is below the random order's"
)


# ---- the functional core ------------------------------------------------------------------------------------------
def removal_order(heat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, the map's largest value first; ties in a random order."""
    flat = np.asarray(heat, dtype=np.float64).ravel()
    return np.lexsort((rng.random(flat.size), -flat))  # the last key sorts first


def perturbation_curves(
    explainer: Explainer, orders: Sequence[np.ndarray], steps: int = STEPS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each order, the score as pixels are removed (deletion) and revealed (insertion) in that order: two
    ``(steps + 1,)`` curves, at 0, 1/steps, ..., 1 of the pixels. Every channel of a pixel goes together.

    The ends are the same for every order (the input itself; the all-baseline image), so they are scored once, and the
    perturbed copies of all orders are scored together, ``explainer.batch_size`` at a time.
    """
    x = explainer.x[0].detach()  # (C, *S)
    flat = x.reshape(x.shape[0], -1)  # (C, P)
    counts = [int(c) for c in np.round(np.linspace(0, flat.shape[1], steps + 1))[1:-1]]  # the inner steps
    plans = [(o, kind, c) for o in range(len(orders)) for kind in ("deletion", "insertion") for c in counts]
    indices = [torch.as_tensor(order, dtype=torch.long) for order in orders]

    def picture(plan: tuple[int, str, int]) -> torch.Tensor:
        o, kind, count = plan
        chosen = indices[o][:count]
        if kind == "deletion":
            out = flat.clone()
            out[:, chosen] = explainer.baseline
        else:
            out = torch.full_like(flat, explainer.baseline)
            out[:, chosen] = flat[:, chosen]
        return out.reshape(x.shape)

    whole, empty = explainer.scores(torch.stack([x, torch.full_like(x, explainer.baseline)]))
    scores = [
        explainer.scores(torch.stack([picture(p) for p in plans[i : i + explainer.batch_size]]))
        for i in range(0, len(plans), explainer.batch_size)
    ]
    inner = np.concatenate(scores).reshape(len(orders), 2, len(counts)) if plans else np.zeros((len(orders), 2, 0))
    return [(np.concatenate([[whole], row[0], [empty]]), np.concatenate([[empty], row[1], [whole]])) for row in inner]


def curve_auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps of the fraction from 0 to 1 (trapezoids)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The absolute value of Spearman's rank correlation of two maps (scipy); 0 when either is constant (it ranks
    nothing)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    value = abs(float(spearmanr(a, b).statistic))
    return value if np.isfinite(value) else 0.0


def mean_with_interval(values: Sequence[float], n_bootstrap: int, seed: int) -> dict[str, Any]:
    """``{"value": mean, "ci95": [lo, hi]}`` with a percentile bootstrap over the values (images)."""
    from medlens.metrics.bootstrap import interval_entry, resample_weights

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"value": None, "ci95": [None, None]}
    if n_bootstrap <= 0 or v.size < 2:
        return interval_entry(float(v.mean()), None)
    samples = np.concatenate([w @ v / v.size for w in resample_weights(v.size, n_bootstrap, seed)])  # (B,)
    return interval_entry(float(v.mean()), samples)


def choose_default(scores: dict[str, Any], order: Sequence[str]) -> tuple[str, str]:
    """The default method by :data:`RULE`, and why, from a ``faithfulness.json``-shaped mapping.

    Args:
        scores: ``{"methods": {name: {"deletion_auc", "insertion_auc", "randomization_similarity"}}, "baselines":
            {"random": {"deletion_auc", ...}}}``, entries ``{"value", "ci95"}``.
        order: the task's methods in its order of preference (ties go to the earlier one).
    """
    methods = scores["methods"]
    random_deletion = scores["baselines"]["random"]["deletion_auc"]["value"]

    def value(name: str, key: str) -> float:
        v = methods[name][key]["value"]
        return float(v) if v is not None else float("nan")

    def gap(name: str) -> float:
        g = value(name, "insertion_auc") - value(name, "deletion_auc")
        return g if np.isfinite(g) else -np.inf

    scored = [m for m in order if m in methods]
    passing = [
        m
        for m in scored
        if value(m, "randomization_similarity") < SIMILARITY_LIMIT
        and random_deletion is not None
        and value(m, "deletion_auc") < random_deletion
    ]
    pool = passing or scored
    best = max(pool, key=lambda m: (gap(m), -scored.index(m)))
    figures = (
        f"insertion {value(best, 'insertion_auc'):.3f} - deletion {value(best, 'deletion_auc'):.3f} = {gap(best):.3f}; "
        f"randomisation similarity {value(best, 'randomization_similarity'):.3f}; random order deletion "
        f"{random_deletion if random_deletion is None else round(random_deletion, 3)}"
    )
    if passing:
        why = f"{best}: {RULE} ({figures}); passed: {', '.join(passing)}"
    else:
        why = (
            f"{best}: no method passed both checks (randomisation similarity below {SIMILARITY_LIMIT}, deletion AUC "
            f"below the random order's), so the largest insertion minus deletion AUC of all ({figures})"
        )
    return best, why


# ---- scoring a bundle on images -----------------------------------------------------------------------------------
@dataclass
class Faithfulness:
    """Scores of several methods on the same images.

    Attributes:
        scores: ``faithfulness.json``: ``{"methods": {NAME: {"deletion_auc", "insertion_auc",
            "randomization_similarity"}}, "baselines": {"random": {"deletion_auc", "insertion_auc"}}, "default":
            NAME}``; metric entries are ``{"value", "ci95"}``.
        why: the reason for the default.
        n_images: images scored.
        skipped: ``(source, reason)`` of the images that could not be explained.
        prediction_seconds: median time of one prediction (``bundle.predict``) per image, in the same run.
        timing: per method ``{"seconds_per_image", "time_ratio_to_prediction"}`` (median time of the method per
            image, and its ratio to ``prediction_seconds``; None when predictions were not timed).
        per_image: per method (and ``"random"``) ``{"deletion_auc": [...], "insertion_auc": [...]}``, one value per
            image in order (for paired comparisons; not written to ``faithfulness.json``).
    """

    scores: dict[str, Any]
    why: str
    n_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    prediction_seconds: float | None = None
    timing: dict[str, dict[str, float | None]] = field(default_factory=dict)
    per_image: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def default(self) -> str:
        return str(self.scores["default"])


def score_methods(
    bundle: Bundle,
    images: Iterable[Image],
    methods: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    steps: int = STEPS,
    progress: ProgressFn | None = None,
    total: int | None = None,
    time_predictions: bool = True,
) -> Faithfulness:
    """Explain every image with every method; measure deletion, insertion, randomisation similarity and time.

    Args:
        bundle: the model.
        images: the inputs, in their own geometry.
        methods: method names (each supported by the bundle's task).
        n_bootstrap: resamples for the intervals over images.
        seed: seeds the random orders, the tie-breaks, the randomised networks and the resamples.
        steps: steps of the deletion and insertion curves.
        progress: called per image.
        total: the number of images, for progress.
        time_predictions: time one prediction per image (``bundle.predict``), for the methods' time ratios.

    Raises:
        MedlensError: when no image could be explained.
    """
    from medlens.core.errors import InputError

    task = bundle.task
    plan = bundle.plan.without_pretrained()
    random_nets = randomized_networks(lambda: task.build_network(plan), len(bundle.networks()), seed)
    rows: dict[str, dict[str, list[float]]] = {
        m: {"deletion": [], "insertion": [], "similarity": [], "seconds": []} for m in methods
    }
    random_rows: dict[str, list[float]] = {"deletion": [], "insertion": []}
    prediction: list[float] = []
    skipped: list[tuple[str, str]] = []
    report(progress, "scoring explanations", 0, total)
    done = 0
    for i, image in enumerate(images):
        source = str(image.meta.get("source", "<memory>"))
        try:
            start = time.perf_counter()
            if time_predictions:
                task.predict(bundle, [image])
            predicted = time.perf_counter() - start
            explainer = task.explainer(bundle, image)
        except MedlensError as exc:
            skipped.append((source, str(exc)))
            log.warning("not explained: %s", exc)
            continue
        prediction.append(predicted)
        rng = np.random.default_rng(seed + i)
        randomized = explainer.with_networks(random_nets)
        orders = []
        for m in methods:
            start = time.perf_counter()
            heat = compute_map(m, explainer)
            rows[m]["seconds"].append(time.perf_counter() - start)
            rows[m]["similarity"].append(rank_similarity(heat, compute_map(m, randomized)))
            orders.append(removal_order(heat, rng))
        orders.append(rng.permutation(int(np.prod(explainer.spatial_shape))))  # the random order
        curves = perturbation_curves(explainer, orders, steps)
        for name, (deletion, insertion) in zip([*methods, None], curves, strict=True):
            row = rows[name] if name is not None else random_rows
            row["deletion"].append(curve_auc(deletion))
            row["insertion"].append(curve_auc(insertion))
        done += 1
        report(progress, "scoring explanations", done + len(skipped), total)
    if not done:
        first = skipped[0] if skipped else ("images", "none given")
        raise InputError(first[0], f"no image could be explained ({len(skipped)} skipped; first: {first[1]})")
    per_prediction = statistics.median(prediction) if time_predictions else 0.0
    scores: dict[str, Any] = {"methods": {}, "baselines": {}, "default": None}
    timing: dict[str, dict[str, float | None]] = {}
    for m in methods:
        scores["methods"][m] = {
            "deletion_auc": mean_with_interval(rows[m]["deletion"], n_bootstrap, seed),
            "insertion_auc": mean_with_interval(rows[m]["insertion"], n_bootstrap, seed),
            "randomization_similarity": mean_with_interval(rows[m]["similarity"], n_bootstrap, seed),
        }
        seconds = statistics.median(rows[m]["seconds"])
        timing[m] = {
            "seconds_per_image": round(seconds, 5),
            "time_ratio_to_prediction": round(seconds / per_prediction, 2) if per_prediction > 0 else None,
        }
    scores["baselines"]["random"] = {
        "deletion_auc": mean_with_interval(random_rows["deletion"], n_bootstrap, seed),
        "insertion_auc": mean_with_interval(random_rows["insertion"], n_bootstrap, seed),
    }
    default, why = choose_default(scores, [m for m in task.explain_methods if m in methods])
    scores["default"] = default
    per_image = {
        name: {"deletion_auc": row["deletion"], "insertion_auc": row["insertion"]}
        for name, row in [*rows.items(), ("random", random_rows)]
    }
    predicted_seconds = round(per_prediction, 5) if time_predictions else None
    return Faithfulness(scores, why, done, skipped, predicted_seconds, timing, per_image)
