"""Plans and bundles written by medlens before plan version 2 still load, with every key's old meaning kept.

The three ``legacy_plans/*_v1.yaml`` files are ``plan.yaml`` files that the previous release (commit ef64c00)
wrote for real data (PneumoniaMNIST, MSD Hippocampus, BCCD).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medlens.tasks.base import load_bundle, load_plan

LEGACY = Path(__file__).parent / "legacy_plans"


def test_version_1_plans_load_with_their_meaning_kept() -> None:
    classification = load_plan(LEGACY / "classification_v1.yaml")
    old = yaml.safe_load((LEGACY / "classification_v1.yaml").read_text())
    assert classification.version == 2
    assert classification.classification.class_weights == old["train"]["class_weights"]  # type: ignore[attr-defined]
    assert classification.augment.spatial_probability == old["augment"]["probability"]
    assert classification.augment.intensity_probability == 1.0  # classification changed intensities every time
    segmentation = load_plan(LEGACY / "segmentation_v1.yaml")
    assert segmentation.augment.intensity_probability == 0.15
    assert (
        segmentation.segmentation.target_spacing
        == yaml.safe_load((LEGACY / "segmentation_v1.yaml").read_text())[  # type: ignore[attr-defined]
            "segmentation"
        ]["target_spacing"]
    )
    detection = load_plan(LEGACY / "detection_v1.yaml")
    old_det = yaml.safe_load((LEGACY / "detection_v1.yaml").read_text())
    assert detection.augment.intensity_probability == old_det["augment"]["probability"]
    assert detection.detection.anchor_sizes == old_det["detection"]["anchor_sizes"]  # type: ignore[attr-defined]


def test_a_version_1_bundle_predicts(tmp_path: Path) -> None:
    """A bundle whose bundle.yaml holds a version-1 plan loads, builds its network and predicts."""
    from safetensors.torch import save_file

    from medlens.core.image import Image, default_affine
    from medlens.tasks import get_task

    raw = yaml.safe_load((LEGACY / "classification_v1.yaml").read_text())
    raw["model"]["kwargs"]["widen_factor"] = 0.25
    net = get_task("classification").build_network(load_plan_from(raw, tmp_path))
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(bundle_dir / "member_0.safetensors"))
    spec = {"format": "medlens-bundle/1", "task": "classification", "class_names": raw["class_names"],
            "threshold": 0.5, "members": ["member_0.safetensors"], "info": {}, "plan": raw}  # fmt: skip
    (bundle_dir / "bundle.yaml").write_text(yaml.safe_dump(spec))
    bundle = load_bundle(bundle_dir)
    image = Image(np.random.default_rng(0).integers(0, 255, (1, 28, 28)).astype(np.uint8), default_affine(2))
    prediction = bundle.predict(image)
    assert set(prediction.to_dict()["probabilities"]) == set(raw["class_names"])  # type: ignore[index]
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5  # type: ignore[attr-defined]


def load_plan_from(raw: dict, tmp_path: Path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_plan(path)


@pytest.mark.parametrize("name", ["classification_v1.yaml", "segmentation_v1.yaml", "detection_v1.yaml"])
def test_a_migrated_plan_round_trips_as_version_2(name: str, tmp_path: Path) -> None:
    from medlens.training.overrides import save_plan

    plan = load_plan(LEGACY / name)
    save_plan(plan, tmp_path / "plan.yaml")
    again = load_plan(tmp_path / "plan.yaml")
    assert again == plan and yaml.safe_load((tmp_path / "plan.yaml").read_text())["version"] == 2
