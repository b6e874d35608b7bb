"""Segmentation planning: nnU-Net's rules on a real fingerprint and on hand-built ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medlens.cli.main import main


def test_plan_is_nnunet_like(small_msd: Callable[..., Path], tmp_path: Path) -> None:
    import medlens

    assert main(["import", "msd", str(small_msd(6)), "--out", str(tmp_path / "ds")]) == 0
    plan, path = medlens.plan(tmp_path / "ds")
    seg = plan.segmentation
    assert seg is not None and seg.configuration == "3d" and seg.target_spacing == [1.0, 1.0, 1.0]
    assert all(s % d == 0 for s, d in zip(plan.data.input_size, seg.divisor(), strict=True))
    assert seg.strides[0] == [1, 1, 1] and len(seg.strides) >= 3 and seg.normalization == ["zscore"]
    assert any("patch" in n for n in plan.notes) and "segmentation:" in path.read_text()


def test_plan_rules_for_2d_and_anisotropic() -> None:
    from medlens.tasks.segmentation.planning import plan_segmentation

    def fingerprint(dims: int, spacing: list[float], shape: list[int], modality: str = "CT") -> dict:
        stats = {"mean": 50.0, "std": 20.0, "p00_5": -100.0, "p50": 40.0, "p99_5": 200.0}
        return {
            "spatial_dims": dims, "modality": modality, "class_names": ["background", "organ"],
            "n_cases": {"train": 20}, "segmentation": {
                "spacings": [spacing] * 20, "shapes": [shape] * 20, "foreground_intensity": [stats],
            },
        }  # fmt: skip

    flat = plan_segmentation(fingerprint(2, [0.5, 0.5], [512, 512], "OT"))
    assert flat.segmentation and flat.segmentation.configuration == "2d" and flat.spatial_dims == 2
    thick = plan_segmentation(fingerprint(3, [0.7, 0.7, 5.0], [256, 256, 8]))
    assert thick.segmentation and thick.segmentation.configuration == "2d_slices"
    assert thick.data.input_size[2] == 1 and "slice by slice" in thick.segmentation.why
    assert thick.segmentation.normalization == ["ct"] and thick.segmentation.ct_clip == [[-100.0, 200.0]]
    aniso = plan_segmentation(fingerprint(3, [0.7, 0.7, 3.0], [256, 256, 60]))
    assert aniso.segmentation and aniso.segmentation.configuration == "3d"
    assert aniso.segmentation.strides[1][2] == 1 and aniso.segmentation.kernels[0][2] == 1  # in-plane first
