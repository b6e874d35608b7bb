"""Classification and multi-label classification of whole images, 2D and 3D.

Modules: :mod:`.config` (the plan section), :mod:`.planning` (rules), :mod:`.module` (network and training
step), :mod:`.training` (data and the operating threshold), :mod:`.prediction` (the typed result),
:mod:`.metrics`, :mod:`.plots`, :mod:`.report`, :mod:`.evaluation`, :mod:`.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.errors import InputError
from medlens.tasks.base import Calibration, Graph, Task, register_task
from medlens.tasks.classification.config import ClassificationPlan

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Case, Dataset
    from medlens.models.bundle import Bundle


def class_counts(dataset: Dataset, split: str) -> list[int]:
    """Cases per class (positives per label for multi-label) in one split."""
    counts = [0] * dataset.num_classes
    for case in dataset.split(split):
        if dataset.spec.task == "multilabel":
            counts = [a + b for a, b in zip(counts, dataset.label_vector(case), strict=True)]
        else:
            counts[dataset.class_index(case)] += 1
    return counts


@register_task
class ClassificationTask(Task):
    name = "classification"
    aliases = ("multilabel",)
    plan_type = ClassificationPlan
    description = "one class per image (or several labels per image), 2D or 3D"
    batch_size = 64
    explain_methods = ("gradcam", "gradcam++", "scorecam", "eigencam", "occlusion", "integrated-gradients")

    def check_dataset(self, dataset: Dataset) -> None:
        super().check_dataset(dataset)
        missing = [n for n, c in zip(dataset.spec.classes, class_counts(dataset, "train"), strict=True) if c == 0]
        if missing:
            raise InputError(
                dataset.root / dataset.spec.manifest, f"class(es) with no training case: {', '.join(missing)}"
            )

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        return {"class_counts": {s: class_counts(dataset, s) for s in ("train", "val", "test")}}

    def plan(self, fingerprint: dict[str, Any], *, has_gpu: bool) -> ClassificationPlan:
        from medlens.tasks.classification.planning import classification_cost, plan_classification

        cost = None if has_gpu else classification_cost(fingerprint)
        return plan_classification(fingerprint, has_gpu=has_gpu, cost=cost)

    def build_network(self, plan: Any) -> Any:
        from medlens.tasks.classification.module import build_network

        return build_network(plan)

    def prepare(self, dataset: Dataset, plan: Any, cases: Sequence[Case], progress: ProgressFn | None) -> Any:
        from medlens.tasks.classification.training import prepare

        return prepare(dataset, plan, cases, progress)

    def loaders(self, plan: Any, prepared: Any, member: Any) -> Any:
        from medlens.tasks.classification.training import loaders

        return loaders(plan, prepared, member)

    def module(self, plan: Any, budget: Any) -> Any:
        from medlens.tasks.classification.module import ClassificationModule

        return ClassificationModule(plan, budget=budget)

    def calibrate(self, plan: Any, nets: Sequence[Any], members: Sequence[Any], prepared: Any) -> Calibration:
        from medlens.tasks.classification.training import calibrate

        return calibrate(plan, nets, members, prepared)

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        threshold = calibration.threshold
        return [
            f"Operating threshold (chosen on validation): {threshold if threshold is not None else 'arg-max / 0.5'}"
        ]

    def predict(self, bundle: Bundle, images: Sequence[Image], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.classification.prediction import predict_images

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
        from medlens.tasks.classification.evaluation import evaluate

        return evaluate(bundle, dataset, cases, folder, n_bootstrap=n_bootstrap, title=title, progress=progress)

    def export_graph(self, bundle: Bundle) -> Graph:
        from medlens.tasks.classification.export import export_graph

        return export_graph(bundle)

    def explainer(self, bundle: Bundle, image: Image, *, target: str | None = None) -> Any:
        from medlens.tasks.classification.explain import explainer

        return explainer(bundle, image, target)
