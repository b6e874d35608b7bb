"""Detection metrics against pycocotools on the same predictions, and the bootstrap's behaviour."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from medlens.tasks.detection.metrics import ImageBoxes, choose_score_threshold, detection_metrics, misses_per_image


def _random_case(seed: int, n_images: int = 12, n_classes: int = 3) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Ground truth with some empty images and a class-free image; predictions jittered, missing, duplicated."""
    rng = np.random.default_rng(seed)
    truths, preds = [], []
    for i in range(n_images):
        n = 0 if i % 5 == 4 else int(rng.integers(1, 8))
        xy = rng.uniform(0, 200, size=(n, 2))
        wh = rng.uniform(8, 60, size=(n, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, n_classes - 1, size=n)  # the last class never appears in the truth
        truths.append(ImageBoxes(gt, labels))
        keep = rng.uniform(size=n) > 0.2
        jitter = rng.normal(0, 6, size=(int(keep.sum()), 4))
        boxes = [gt[keep] + jitter, gt[keep][:2] + 2.0]  # matches, plus near-duplicates
        n_fp = int(rng.integers(0, 5))
        fxy = rng.uniform(0, 200, size=(n_fp, 2))
        boxes.append(np.concatenate([fxy, fxy + rng.uniform(8, 60, size=(n_fp, 2))], axis=1))
        pb = np.concatenate(boxes)
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        pl = np.concatenate([labels[keep], labels[keep][:2], rng.integers(0, n_classes, size=n_fp)])
        scores = rng.uniform(0.05, 1.0, size=len(pb)).round(2)  # rounded: ties across images, as in practice
        preds.append(ImageBoxes(pb, pl, scores))
    return preds, truths


def _pycocotools(preds: list[ImageBoxes], truths: list[ImageBoxes], n_classes: int) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        images.append({"id": i + 1, "width": 400, "height": 400})
        for box, label in zip(t.boxes, t.labels, strict=True):
            x1, y1, x2, y2 = map(float, box)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1, "iscrowd": 0,
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            )  # fmt: skip
        for box, label, score in zip(p.boxes, p.labels, p.scores, strict=True):
            x1, y1, x2, y2 = map(float, box)
            results.append({"image_id": i + 1, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(score)})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)]}  # fmt: skip
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools(seed: int) -> None:
    preds, truths = _random_case(seed)
    names = ["a", "b", "c"]
    ours = detection_metrics(preds, truths, names, n_bootstrap=0)
    ev = _pycocotools(preds, truths, len(names))
    assert ours["map"]["value"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert ours["map50"]["value"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert ours["map75"]["value"] == pytest.approx(ev.stats[2], abs=1e-12)
    assert ours["mar100"]["value"] == pytest.approx(ev.stats[8], abs=1e-12)
    precision = ev.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area "all", 100 detections
    for k, name in enumerate(names):
        per_t = precision[:, :, k].mean(axis=1)
        if (precision[:, :, k] < 0).any():  # no ground truth of this class: undefined, as in pycocotools
            assert ours["ap_per_class"][name]["value"] is None
            continue
        assert ours["ap_per_class"][name]["value"] == pytest.approx(per_t.mean(), abs=1e-12)
        assert ours["ap50_per_class"][name]["value"] == pytest.approx(per_t[0], abs=1e-12)


def test_max_detections_per_image_as_pycocotools() -> None:
    preds, truths = _random_case(3, n_images=3)
    many = [ImageBoxes(np.repeat(p.boxes, 40, axis=0), np.repeat(p.labels, 40), np.tile(p.scores, 40)) for p in preds]
    ours = detection_metrics(many, truths, ["a", "b", "c"], n_bootstrap=0)
    ev = _pycocotools(many, truths, 3)
    assert ours["map"]["value"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert ours["mar100"]["value"] == pytest.approx(ev.stats[8], abs=1e-12)


def test_bootstrap_interval_brackets_the_value_and_is_seeded() -> None:
    preds, truths = _random_case(4, n_images=30)
    a = detection_metrics(preds, truths, ["a", "b", "c"], n_bootstrap=200, seed=1)
    b = detection_metrics(preds, truths, ["a", "b", "c"], n_bootstrap=200, seed=1)
    lo, hi = a["map50"]["ci95"]
    assert lo < a["map50"]["value"] < hi
    assert a["map50"]["ci95"] == b["map50"]["ci95"]
    assert a["ap_per_class"]["c"]["value"] is None  # class never in the truth: no AP, no interval
    assert a["ap_per_class"]["c"]["ci95"] == [None, None]


def test_bootstrap_weights_equal_a_resampled_dataset_without_duplicates() -> None:
    """A resample that draws each chosen image once is just a smaller dataset: weights must agree exactly."""
    from medlens.tasks.detection.metrics import match_class, weighted_ap_recall

    preds, truths = _random_case(5, n_images=10)
    chosen = [0, 2, 3, 7, 9]
    weights = np.zeros((1, 10))
    weights[0, chosen] = 1
    sub_p, sub_t = [preds[i] for i in chosen], [truths[i] for i in chosen]
    for k in range(2):
        full = weighted_ap_recall(match_class(preds, truths, k), weights)
        sub = weighted_ap_recall(match_class(sub_p, sub_t, k), np.ones((1, 5)))
        np.testing.assert_allclose(full[0], sub[0], atol=1e-12)
        np.testing.assert_allclose(full[1], sub[1], atol=1e-12)


def test_perfect_predictions_and_misses() -> None:
    truths = [
        ImageBoxes(np.array([[0, 0, 10, 10], [20, 20, 40, 40.0]]), np.array([0, 1])),
        ImageBoxes(np.zeros((0, 4)), np.zeros(0, int)),
    ]
    preds = [ImageBoxes(t.boxes.copy(), t.labels.copy(), np.array([0.9, 0.3])[: len(t.labels)]) for t in truths]
    m = detection_metrics(preds, truths, ["x", "y"], n_bootstrap=50)
    assert m["map"]["value"] == pytest.approx(1.0)
    assert list(misses_per_image(preds, truths, 2, score_threshold=0.5)) == [1, 0]
    assert choose_score_threshold(preds, truths, 2) == pytest.approx(0.3)


def test_bootstrap_in_small_blocks_gives_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    import medlens.tasks.detection.metrics as detection

    preds, truths = _random_case(6, n_images=20)
    whole = detection_metrics(preds, truths, ["a", "b", "c"], n_bootstrap=64, seed=3)
    monkeypatch.setattr(detection, "_MAX_BLOCK", 50)  # a few resamples per block
    blocked = detection_metrics(preds, truths, ["a", "b", "c"], n_bootstrap=64, seed=3)
    assert blocked["map"]["ci95"] == pytest.approx(whole["map"]["ci95"])
    assert blocked["ap50_per_class"]["a"]["ci95"] == pytest.approx(whole["ap50_per_class"]["a"]["ci95"])
