"""Detection plan rules, the box fingerprint, and overrides of the detection section."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from medlens.core.errors import ConfigError
from medlens.data.fingerprint import compute_fingerprint
from medlens.tasks.base import get_task
from medlens.tasks.detection.planning import MIN_OBJECT_SIDE, plan_detection, smallest_side
from medlens.training.overrides import apply_overrides


@pytest.fixture(scope="module")
def fingerprint(tiny_dataset) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return compute_fingerprint(tiny_dataset, task_part=get_task("detection").fingerprint)


def test_fingerprint_measures_boxes(fingerprint: dict[str, Any], tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from medlens.data.boxes import read_boxes

    boxes = fingerprint["boxes"]
    n_train = sum(len(read_boxes(tiny_dataset, c)[1]) for c in tiny_dataset.split("train"))
    assert boxes["n_boxes_train"] == n_train == sum(boxes["class_counts"]["train"])
    assert fingerprint["class_counts"] == boxes["class_counts"]
    assert boxes["image_size"]["median"] == [480, 640]
    assert boxes["side"]["p5"] <= boxes["side"]["p50"] <= boxes["side"]["p95"]
    assert 0.3 < boxes["aspect"]["p50"] < 3


def test_plan_follows_the_boxes(fingerprint: dict[str, Any]) -> None:
    plan = plan_detection(fingerprint)
    d = plan.detection
    assert plan.task == "detection" and plan.train.monitor == "val_map50"
    assert all(s % 32 == 0 for s in plan.data.input_size)
    scale = plan.data.input_size[0] / 480
    assert smallest_side(fingerprint["boxes"]) * scale >= MIN_OBJECT_SIDE * 0.9  # small boxes stay visible
    assert plan.model.name == "retinanet" and d is not None and d.anchor_sizes is not None
    assert len(d.anchor_sizes) == 5 and d.anchor_sizes[1][0] == 2 * d.anchor_sizes[0][0]
    assert d.train_short_sides[-1] == min(plan.data.input_size)  # evaluation size last
    assert plan.train.budget_minutes == 45.0  # CPU
    assert plan_detection(fingerprint, has_gpu=True).train.budget_minutes is None
    assert any("anchors" in n for n in plan.notes)


def test_wide_aspect_ratios_go_anchor_free(fingerprint: dict[str, Any]) -> None:
    wide = copy.deepcopy(fingerprint)
    wide["boxes"]["aspect"] |= {"p5": 0.2, "p95": 3.0}
    plan = plan_detection(wide)
    assert plan.model.name == "fcos" and plan.detection is not None and plan.detection.anchor_sizes is None


def test_small_objects_cap_the_input_on_cpu(fingerprint: dict[str, Any]) -> None:
    tiny = copy.deepcopy(fingerprint)
    tiny["boxes"]["side"]["p5"] = 4.0
    tiny["boxes"]["side_per_class"] = {n: {"p5": 4.0} for n in tiny["boxes"]["side_per_class"]}
    assert max(plan_detection(tiny).data.input_size) == 512
    assert max(plan_detection(tiny, has_gpu=True).data.input_size) == 1024


def test_overrides_reach_the_detection_section(fingerprint: dict[str, Any]) -> None:
    plan = apply_overrides(plan_detection(fingerprint), ["detection.nms_iou=0.45", "model.name=fcos"])
    assert plan.detection is not None and plan.detection.nms_iou == 0.45 and plan.model.name == "fcos"
    with pytest.raises(ConfigError, match=r"detection\.nms_iuo"):
        apply_overrides(plan, ["detection.nms_iuo=0.4"])
    with pytest.raises(ConfigError):
        apply_overrides(plan, ["detection.nms_iou=1.5"])


def test_a_small_rare_class_sets_the_scale(fingerprint: dict[str, Any]) -> None:
    boxes = copy.deepcopy(fingerprint["boxes"])
    boxes["side_per_class"] = {"Platelets": {"p5": 30.0}, "RBC": {"p5": 85.0}, "WBC": {"p5": 120.0}}
    boxes["side"]["p5"] = 45.0  # the overall percentile hides the small class
    boxes["class_counts"]["train"] = [20, 300, 20]
    assert smallest_side(boxes) == 30.0
    boxes["class_counts"]["train"] = [3, 300, 20]  # too few boxes to trust its percentile
    assert smallest_side(boxes) == 85.0
    del boxes["side_per_class"]  # a fingerprint cached before per-class sizes: the overall percentile
    assert smallest_side(boxes) == 45.0
