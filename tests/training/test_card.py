"""The model card: rendered from the bundle's own records (bundle.yaml, evaluation.json) with every section the
issue asks for, whatever the shape of the calibration, explanation and subgroup figures added to it."""

from __future__ import annotations

from pathlib import Path

import yaml

from medlens.training.card import evaluation_record, render_card

SEGMENTATION_METRICS = {
    "n_cases": 40,
    "dice": {"value": 0.8907, "ci95": [0.8801, 0.9003]},
    "dice_per_class": {
        "Anterior": {"value": 0.9, "ci95": [0.89, 0.909]}, "Posterior": {"value": 0.88, "ci95": [0.87, 0.89]}
    },
    "hd95": {"Anterior": {"value": 1.3, "ci95": [1.1, 1.5]}, "Posterior": {"value": 1.46, "ci95": [1.2, 1.7]}},
    "hd95_mean": {"value": 1.38, "ci95": [1.2, 1.6]},
    "keep_largest_component": [1, 2],
    "worst_cases": [{"case_id": "hippocampus_042", "metric": "mean foreground Dice", "value": 0.61}],
    "dataset": {"path": "/data/hippo", "name": "Hippocampus", "split": "test"},
}  # fmt: skip


def test_the_evaluation_record_keeps_headline_figures_and_breakdowns() -> None:
    record = evaluation_record(SEGMENTATION_METRICS, n_bootstrap=1000)
    assert record["metrics"] == {"dice": SEGMENTATION_METRICS["dice"], "hd95_mean": SEGMENTATION_METRICS["hd95_mean"]}
    assert set(record["breakdowns"]) == {"dice_per_class", "hd95"}
    assert (record["split"], record["n_cases"], record["ci_level"]) == ("test", 40, 95)
    per_class = {"per_class": {"normal": {"sensitivity": {"value": 0.9, "ci95": [0.8, 0.95]}, "support": 20}}}
    assert evaluation_record(per_class, n_bootstrap=0)["breakdowns"] == {
        "per_class normal": {"sensitivity": {"value": 0.9, "ci95": [0.8, 0.95]}}
    }


def test_every_section_and_whatever_shape_subgroups_take(hippo_run: Path) -> None:
    spec = yaml.safe_load((hippo_run / "run" / "bundle" / "bundle.yaml").read_text())
    spec["calibration"] = {"method": "none needed", "ece": {"value": 0.02, "ci95": [0.01, 0.03]}}
    spec["explanation"] = {"default": "occlusion", "why": "most faithful on validation", "deletion_auc": 0.27}
    faithfulness = {"methods": {"gradcam": {"deletion_auc": {"value": 0.31, "ci95": [0.28, 0.35]}},
                                "occlusion": {"deletion_auc": {"value": 0.27, "ci95": [0.25, 0.3]}}},
                    "baselines": {"random": {"deletion_auc": {"value": 0.45, "ci95": [0.41, 0.5]}}}}  # fmt: skip
    scored = render_card({**spec, "explanation": {"default": "occlusion", "why": "w", "scores": faithfulness}})
    assert "| occlusion | 0.27 (95% CI 0.25 – 0.3) |" in scored and "| random (baseline) | 0.45" in scored
    analysis = {  # the shape of 'evaluate --by COLUMN' (calibration's subgroup analysis)
        "column": "sex", "banding": "", "headline": "dice", "higher_is_better": True,
        "rule": "flagged: the subgroup's interval lies wholly below the rest's",
        "groups": {
            "F": {"n_cases": 20, "n_patients": 20, "headline": {"value": 0.89, "ci95": [0.87, 0.91]},
                  "rest": {"n_cases": 20, "value": 0.9, "ci95": [0.88, 0.92]}, "flagged": False, "metrics": {}},
        },
        "flagged": [],
    }  # fmt: skip
    for subgroups in (
        [{"subgroup": "sex: F", "n": 20, "dice": {"value": 0.89, "ci95": [0.87, 0.91]}}],
        {"sex": {"F": {"n": 20, "dice": 0.89}, "M": {"n": 20, "dice": 0.9}}},
        analysis,
    ):
        record = evaluation_record({**SEGMENTATION_METRICS, "subgroups": subgroups}, n_bootstrap=1000)
        card = render_card(spec, record)
        for heading in ("## Data", "## Validation", "## Calibration", "## Explanation", "## Held-out performance",
                        "## Subgroups", "## Known failure modes", "## Intended use and limits"):  # fmt: skip
            assert heading in card, heading
        assert "| dice | 0.8907 | 0.8801 – 0.9003 |" in card and "| Posterior | 1.46 | 1.2 – 1.7 |" in card
        assert "sex: F" in card and "| 20 |" in card and "0.89" in card
        assert "Worst held-out cases by mean foreground Dice" in card and "hippocampus_042" in card
        assert "Worst validation cases by mean foreground Dice" in card
        assert "Default explanation: occlusion" in card and "deletion_auc: 0.27" in card
        assert "ece: 0.02 (95% CI 0.01 – 0.03)" in card


def test_a_bundle_without_card_facts_still_has_a_card(hippo_run: Path) -> None:
    spec = yaml.safe_load((hippo_run / "run" / "bundle" / "bundle.yaml").read_text())
    del spec["info"]["card"]  # a bundle written before the card had its facts
    card = render_card(spec)
    assert card.startswith("# Model card: Hippocampus segmentation") and "Not evaluated on held-out data yet" in card
    assert "No per-case measurement is recorded yet" in card
