"""``--set model.name=vit|convnext``: the plan picks the family member that fits the images and the time budget, and
says why (issue 13, part 3)."""

from __future__ import annotations

import pytest

from medlens.core.errors import ConfigError
from medlens.training.image_planning import cost_counter, size_backbone
from medlens.workflows.planning import make_plan


def test_the_plan_sizes_a_vit_to_the_budget(pneumonia_dataset: object) -> None:
    roomy = make_plan(pneumonia_dataset, ["model.name=vit", "model.init=/pre"])  # type: ignore[arg-type]  # 40, 6 min
    assert (roomy.model.name, roomy.model.kwargs) == ("vit_small", {})
    assert "the largest with at least 15 epochs" in roomy.model.why and roomy.model.why in roomy.notes
    assert roomy.model.init == "/pre"  # other model settings survive the sizing
    # the same rule at tighter budgets (the fingerprint's cost counter; no second fingerprint)
    cost = cost_counter({"channels": 1}, outputs=2)
    tight = size_backbone("vit", [28, 28], 40, 0.02, cost)
    assert (tight.name, tight.kwargs) == ("vit_tiny", {"depth": 6}) and "the smallest; none reaches 15" in tight.why
    middle = size_backbone("vit", [28, 28], 40, 0.15, cost)
    assert (middle.name, middle.kwargs) == ("vit_tiny", {})  # vit_small gets ~5 epochs, vit_tiny ~18
    assert size_backbone("convnext", [28, 28], 40, None, cost).name == "convnext_nano"  # no budget: the largest


def test_a_family_without_a_3d_member_is_refused(small_adrenal_npz: object, tmp_path: object) -> None:
    from medlens.data.importers import get_importer

    volumes = get_importer("medmnist")(small_adrenal_npz, tmp_path / "ds")  # type: ignore[operator]
    with pytest.raises(ConfigError, match="convnext family has no 3D network"):
        make_plan(volumes, ["model.name=convnext"])
    assert make_plan(volumes, ["model.name=vit"]).model.name == "monai_vit"
