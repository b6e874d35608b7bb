"""The segmentation predictor: one forward pass for cases about a patch in size, MONAI's sliding window beyond."""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medlens.plan.overrides import apply_overrides
from medlens.plan.schema import Plan
from medlens.plan.segmentation import plan_segmentation
from medlens.tasks.segmentation import build_network, sliding_window_probabilities, whole_volume_size


class Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]  # patches through the network
        return self.net(x)


def _plan(overrides: list[str] | None = None) -> Plan:
    stats = {"mean": 50.0, "std": 20.0, "p00_5": 0.0, "p50": 40.0, "p99_5": 200.0}
    fingerprint = {
        "spatial_dims": 3, "modality": "MR", "class_names": ["background", "a", "b"], "n_cases": {"train": 20},
        "segmentation": {"spacings": [[1.0, 1.0, 1.0]] * 20, "shapes": [[20, 24, 20]] * 20,
                         "foreground_intensity": [stats]},
    }  # fmt: skip
    plan = plan_segmentation(fingerprint)
    return apply_overrides(plan, ["data.input_size=[16,16,16]", "segmentation.filters=[4,8,16]", *(overrides or [])])


def _monai(net: nn.Module, x: torch.Tensor, plan: Plan) -> torch.Tensor:
    seg = plan.segmentation
    assert seg is not None
    logits = sliding_window_inference(
        x[None], plan.data.input_size, seg.sw_batch_size, net, overlap=seg.sw_overlap, mode=seg.sw_mode
    )
    return torch.softmax(logits, 1)[0]  # type: ignore[arg-type]


def test_a_case_inside_one_window_gives_monais_result_in_one_pass() -> None:
    plan = _plan()
    torch.manual_seed(0)
    net = Counting(build_network(plan).eval())
    x = torch.randn(1, 13, 16, 11)  # smaller than the patch on two axes: padded, centred, as MONAI does
    with torch.inference_mode():
        ours = sliding_window_probabilities([net], x, plan)
        assert net.calls == 1
        assert torch.allclose(ours, _monai(net, x, plan), atol=1e-5)


def test_a_case_a_little_larger_than_a_patch_is_one_pass() -> None:
    """One patch of compute where MONAI's overlapping windows need more (how the two compare in Dice on real
    held-out cases is measured in benchmarks/segmentation.py, not here with an untrained network)."""
    plan = _plan()
    assert plan.segmentation is not None
    divisor = plan.segmentation.divisor()[0]
    assert whole_volume_size([19, 16, 16], plan) == [-(-19 // divisor) * divisor, 16, 16]  # padded to the divisor
    assert whole_volume_size([40, 40, 40], plan) is None  # 15.6 patches: sliding window
    torch.manual_seed(0)
    net = Counting(build_network(plan).eval())
    x = torch.randn(1, 19, 16, 16)
    with torch.inference_mode():
        ours = sliding_window_probabilities([net], x, plan)
        assert net.calls == 1 and ours.shape == (3, 19, 16, 16)
        assert torch.allclose(ours.sum(0), torch.ones(19, 16, 16), atol=1e-5)
        _monai(net, x, plan)
    assert net.calls > 2  # MONAI's windows: more than one more patch


def test_switched_off_or_large_cases_use_monais_windows() -> None:
    plan = _plan(["segmentation.whole_volume_voxels=0"])
    torch.manual_seed(0)
    net = Counting(build_network(plan).eval())
    x = torch.randn(1, 19, 16, 16)
    with torch.inference_mode():
        ours = sliding_window_probabilities([net], x, plan)
        assert net.calls > 1
        assert torch.allclose(ours, _monai(net, x, plan), atol=1e-5)
        big = sliding_window_probabilities([net], torch.randn(1, 40, 40, 40), _plan())
    assert big.shape == (3, 40, 40, 40)
