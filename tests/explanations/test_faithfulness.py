"""Faithfulness, measured: the functional core (curves, areas, rank similarity, the rule for the default) on known
inputs, and on a trained classifier (the shared ``pneumonia_run``) the checks that can fail: the default method's
map beats a random order, and the same map turned upside down (a deliberately wrong map) scores worse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medlens.explanations.faithfulness import (
    RULE,
    choose_default,
    curve_auc,
    perturbation_curves,
    rank_similarity,
    removal_order,
)
from medlens.explanations.methods import compute_map


def test_curve_auc_is_the_trapezoid_area() -> None:
    assert curve_auc(np.full(9, 0.7)) == pytest.approx(0.7)
    assert curve_auc(np.linspace(1, 0, 17)) == pytest.approx(0.5)
    assert curve_auc(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_removal_order_takes_the_largest_first_and_breaks_ties_at_random() -> None:
    heat = np.array([[0.1, 0.9], [0.5, 0.5]])
    orders = {tuple(removal_order(heat, np.random.default_rng(s))) for s in range(20)}
    assert orders == {(1, 2, 3, 0), (1, 3, 2, 0)}


def test_rank_similarity_is_the_absolute_spearman_correlation() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    assert rank_similarity(a, a**3) == pytest.approx(1.0)
    assert rank_similarity(a, -a) == pytest.approx(1.0)  # an inverted map is the same picture
    assert rank_similarity(a, b) == pytest.approx(abs(spearmanr(a.ravel(), b.ravel()).statistic))
    assert rank_similarity(a, np.zeros((8, 8))) == 0.0  # a constant map ranks nothing


def _entry(value: float) -> dict[str, Any]:
    return {"value": value, "ci95": [value - 0.01, value + 0.01]}


def _scores(**methods: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "methods": {
            name.replace("_", "-"): {
                "deletion_auc": _entry(d),
                "insertion_auc": _entry(i),
                "randomization_similarity": _entry(s),
            }
            for name, (d, i, s) in methods.items()
        },
        "baselines": {"random": {"deletion_auc": _entry(0.5), "insertion_auc": _entry(0.5)}},
    }


def test_the_default_must_pass_the_randomisation_check_and_beat_random() -> None:
    scores = _scores(gradcam=(0.2, 0.9, 0.8), eigencam=(0.4, 0.6, 0.1), occlusion=(0.6, 0.95, 0.1))
    best, why = choose_default(scores, ["gradcam", "eigencam", "occlusion"])
    assert best == "eigencam"  # gradcam has the best gap but draws the same map for a random network
    assert why.startswith(f"eigencam: {RULE}") and "passed: eigencam" in why
    best, why = choose_default(_scores(gradcam=(0.2, 0.9, 0.8), occlusion=(0.6, 0.95, 0.1)), ["gradcam", "occlusion"])
    assert best == "gradcam" and "no method passed both checks" in why


@pytest.fixture()
def bundle(pneumonia_run: Path) -> Any:
    from medlens import load_bundle

    return load_bundle(pneumonia_run / "run")


def test_training_recorded_the_default_and_why(bundle: Any, pneumonia_run: Path) -> None:
    from medlens.explanations import default_method

    recorded = bundle.explanation
    assert recorded["default"] in bundle.task.explain_methods and default_method(bundle) == recorded["default"]
    assert recorded["why"].startswith(recorded["default"] + ": ") and "validation image(s)" in recorded["why"]
    assert "scorecam, occlusion" in recorded["why"]  # the slow methods are named as not scored at training
    scores = recorded["scores"]
    assert scores["split"] == "val" and scores["n_images"] == 8 and scores["default"] == recorded["default"]
    assert set(scores["methods"]) == {"gradcam", "gradcam++", "eigencam", "integrated-gradients"}
    summary = json.loads((pneumonia_run / "run" / "train_summary.json").read_text())
    assert summary["explanation"] == {"default": recorded["default"], "why": recorded["why"]}


def test_the_default_beats_random_and_its_inverted_map_scores_worse(bundle: Any, pneumonia_run: Path) -> None:
    """On 6 test images: deleting pixels in the order of the default method's map lowers the model's score faster
    than a random order, and the map turned upside down (least important first: a wrong map) is worse than both."""
    from medlens.explanations import default_method
    from medlens.models.bundle import read_input

    method = default_method(bundle)
    aucs: dict[str, list[float]] = {"map": [], "inverted": [], "random": []}
    insertion: dict[str, list[float]] = {"map": [], "inverted": []}
    for i, path in enumerate(sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[:6]):
        explainer = bundle.task.explainer(bundle, read_input(path))
        heat = compute_map(method, explainer)
        rng = np.random.default_rng(i)
        orders = [removal_order(heat, rng), removal_order(-heat, rng), rng.permutation(heat.size)]
        curves = perturbation_curves(explainer, orders, steps=8)
        whole, empty = explainer.scores(explainer.x)[0], curves[0][0][-1]
        for (deletion, ins), name in zip(curves, ("map", "inverted", "random"), strict=True):
            assert deletion[0] == pytest.approx(whole) and deletion[-1] == pytest.approx(empty)
            assert ins[0] == pytest.approx(empty) and ins[-1] == pytest.approx(whole)
            aucs[name].append(curve_auc(deletion))
            if name in insertion:
                insertion[name].append(curve_auc(ins))
    mean = {k: float(np.mean(v)) for k, v in aucs.items()}
    assert mean["map"] < mean["random"] < mean["inverted"], mean
    assert np.mean(insertion["map"]) > np.mean(insertion["inverted"])
    assert sum(m < r for m, r in zip(aucs["map"], aucs["random"], strict=True)) >= 4, aucs
