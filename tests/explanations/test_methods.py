"""Every explanation method on a trained 2D classifier (the shared ``pneumonia_run``): a map of the input's own
shape and geometry that ranks pixels, a real PNG overlay, and the map file read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medlens.explanations import explain_image, list_methods

METHODS = ["gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients"]


@pytest.fixture()
def bundle(pneumonia_run: Path) -> Any:
    from medlens import load_bundle

    return load_bundle(pneumonia_run / "run")


@pytest.fixture()
def pictures(pneumonia_run: Path) -> list[Path]:
    return sorted((pneumonia_run / "ds" / "images").glob("test_*.png"))[:2]


def test_the_registry_holds_every_method_and_classification_takes_them_all(bundle: Any) -> None:
    assert list_methods() == ["gradcam", "gradcam++", "eigencam", "scorecam", "occlusion", "integrated-gradients"]
    assert list(bundle.task.explain_methods) == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_every_method_explains_a_2d_classifier(method: str, bundle: Any, pictures: list[Path], tmp_path: Path) -> None:
    from PIL import Image as PILImage

    from medlens.io import read_image
    from medlens.models.bundle import read_input

    image = read_input(pictures[0])
    explanation = explain_image(bundle, image, method)
    assert explanation.method == method and explanation.target in bundle.class_names
    assert 0.0 <= explanation.score <= 1.0  # the probability of the explained class
    heat = explanation.map.array[0]
    assert explanation.map.spatial_shape == image.spatial_shape == (28, 28)
    assert np.array_equal(explanation.map.affine, image.affine)
    assert np.isfinite(heat).all() and np.ptp(heat) > 0  # ranks pixels: not constant
    assert len(np.unique(heat)) > 10

    files = explanation.save(tmp_path, "x")
    assert files == {"json": f"x_{method}.json", "overlay": f"x_{method}.png", "map": f"x_{method}.npz"}
    with PILImage.open(tmp_path / files["overlay"]) as png:
        assert png.format == "PNG" and png.mode == "RGB" and min(png.size) >= 256  # enlarged from 28x28
        pixels = np.asarray(png)
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # a picture, not a flat fill
    back = read_image(tmp_path / files["map"])
    assert back.spatial_shape == image.spatial_shape and np.allclose(back.array[0], heat)
    assert np.array_equal(back.affine, image.affine)


def test_a_target_class_changes_the_map_and_an_unknown_one_is_refused(bundle: Any, pictures: list[Path]) -> None:
    from medlens.core.errors import ConfigError
    from medlens.models.bundle import read_input

    image = read_input(pictures[0])
    a, b = (explain_image(bundle, image, "integrated-gradients", target=c) for c in bundle.class_names)
    assert (a.target, b.target) == tuple(bundle.class_names)
    assert abs(a.score + b.score - 1.0) < 1e-4  # the two class probabilities
    assert not np.allclose(a.map.array, b.map.array)
    with pytest.raises(ConfigError, match=r"--target|class"):
        explain_image(bundle, image, "gradcam", target="no such class")
    with pytest.raises(ConfigError, match="--method"):
        explain_image(bundle, image, "lime")
