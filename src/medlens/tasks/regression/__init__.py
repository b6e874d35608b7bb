"""Regression: one continuous value per image (a volume, an age, a score), 2D or 3D.

Modules: :mod:`.config` (the plan section), :mod:`.planning`, :mod:`.module` (network and training step),
:mod:`.training` (data), :mod:`.prediction`, :mod:`.metrics` (MAE, RMSE, R², Pearson r, Bland-Altman),
:mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import InputError
from medlens.tasks.base import Calibration, Task, implemented_in, register_task
from medlens.tasks.regression.config import RegressionPlan

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Dataset
    from medlens.models.bundle import Bundle


@register_task
class RegressionTask(Task):
    name = "regression"
    plan_type = RegressionPlan
    description = "one continuous value per image (a volume, an age, a score), 2D or 3D"
    batch_size = 64
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")
    table_importer = "csv"
    table_label = "continuous"

    def check_dataset(self, dataset: Dataset) -> None:
        from medlens.tasks.regression.evaluation import target_values

        super().check_dataset(dataset)
        if len(dataset.spec.classes) != 1:
            raise InputError(dataset.root / "dataset.yaml", "a regression dataset names one target under classes")
        values = target_values(dataset, dataset.split("train"))
        if len(values) > 1 and np.ptp(values) == 0:
            raise InputError(dataset.root / dataset.spec.manifest, "every training target has the same value")

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        from medlens.tasks.regression.evaluation import target_values

        values = target_values(dataset, dataset.split("train"))
        p5, p50, p95 = np.percentile(values, [5, 50, 95])
        return {
            "target": {
                "n": len(values),
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else 1.0,
                "min": float(values.min()),
                "max": float(values.max()),
                "p5": float(p5),
                "p50": float(p50),
                "p95": float(p95),
            },
            "target_unit": dataset.spec.source.get("unit", ""),
        }

    plan = implemented_in("medlens.tasks.regression.planning:plan_regression")
    build_network = implemented_in("medlens.tasks.regression.module:build_network")
    prepare = implemented_in("medlens.tasks.regression.training:prepare")
    loaders = implemented_in("medlens.tasks.regression.training:loaders")
    module = implemented_in("medlens.tasks.regression.module:RegressionModule")
    calibrate = implemented_in("medlens.tasks.regression.training:calibrate")

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        r = plan.regression
        mae = calibration.summary.get("val_mae_ensemble")
        shown = f"{mae:.4g} {r.unit}".strip() if mae is not None else "n/a"
        lines = [f"Target: {r.target} ({r.unit or 'no unit'}), {r.loss} loss; ensemble validation MAE {shown}"]
        half = calibration.applied.get("interval_half_width")
        if half is not None:
            lines.append(
                f"Conformal interval at {calibration.applied['conformal_level']:.0%} (split conformal on validation): "
                f"the value ± {half:.4g} {r.unit}".rstrip()
            )
        return lines

    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.regression.prediction import predict_images

        return list(predict_images(bundle, images))

    evaluate = implemented_in("medlens.tasks.regression.evaluation:evaluate")
    export_graph = implemented_in("medlens.tasks.regression.export:export_graph")
    distiller = implemented_in("medlens.tasks.regression.compression:distiller")
    findings = implemented_in("medlens.tasks.regression.findings:regression_findings")
    explainer = implemented_in("medlens.tasks.regression.explain:explainer")
