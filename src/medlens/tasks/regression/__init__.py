"""Regression: one continuous value per image (a volume, an age, a score), 2D or 3D.

Modules: :mod:`.config` (the plan section), :mod:`.planning`, :mod:`.module` (network and training step),
:mod:`.training` (data), :mod:`.prediction`, :mod:`.metrics` (MAE, RMSE, R², Pearson r, Bland-Altman),
:mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.core.errors import InputError
from medlens.tasks.base import Calibration, Graph, Task, register_task
from medlens.tasks.regression.config import RegressionPlan

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Case, Dataset
    from medlens.models.bundle import Bundle


@register_task
class RegressionTask(Task):
    name = "regression"
    plan_type = RegressionPlan
    description = "one continuous value per image (a volume, an age, a score), 2D or 3D"
    batch_size = 64
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")

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

    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> RegressionPlan:
        from medlens.tasks.regression.planning import plan_regression

        return plan_regression(fingerprint, has_gpu=has_gpu)

    def build_network(self, plan: Any) -> Any:
        from medlens.tasks.regression.module import build_network

        return build_network(plan)

    def prepare(self, dataset: Dataset, plan: Any, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        from medlens.tasks.regression.training import prepare

        return prepare(dataset, plan, cases, progress)

    def loaders(self, plan: Any, prepared: Any, member: Any) -> Any:
        from medlens.tasks.regression.training import loaders

        return loaders(plan, prepared, member)

    def module(self, plan: Any, budget: Any) -> Any:
        from medlens.tasks.regression.module import RegressionModule

        return RegressionModule(plan, budget=budget)

    def calibrate(self, plan: Any, nets: Sequence[Any], members: Sequence[Any], prepared: Any) -> Calibration:
        from medlens.tasks.regression.training import calibrate

        return calibrate(plan, nets, members, prepared)

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        r = plan.regression
        mae = calibration.summary.get("val_mae_ensemble")
        shown = f"{mae:.4g} {r.unit}".strip() if mae is not None else "n/a"
        return [f"Target: {r.target} ({r.unit or 'no unit'}), {r.loss} loss; ensemble validation MAE {shown}"]

    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.regression.prediction import predict_images

        return list(predict_images(bundle, images))

    def evaluate(
        self,
        bundle: Bundle,
        dataset: Dataset,
        cases: Sequence[Case],
        folder: Path,
        *,
        n_bootstrap: int,
        title: str,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        from medlens.tasks.regression.evaluation import evaluate

        return evaluate(bundle, dataset, cases, folder, n_bootstrap=n_bootstrap, title=title, progress=progress)

    def export_graph(self, bundle: Bundle) -> Graph:
        from medlens.tasks.regression.export import export_graph

        return export_graph(bundle)

    def explainer(self, bundle: Bundle, image: Image, *, target: str | None = None) -> Any:
        from medlens.tasks.regression.explain import explainer

        return explainer(bundle, image, target)
