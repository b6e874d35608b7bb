"""Sequence: one outcome per subject from the sequence of their visits (rows of a table), by a small transformer
with attention over visits, measured against logistic regression and gradient boosting on the last visit.

Modules: :mod:`.config` (the plan section), :mod:`.table` (reading and encoding visits), :mod:`.planning`,
:mod:`.module` (network and training step), :mod:`.training` (data), :mod:`.prediction`, :mod:`.evaluation`
(with the baselines), :mod:`.report`. A dataset comes from ``medlens import table --task sequence``
(:mod:`medlens.data.importers.visits`); prediction reads a CSV of visits with the same columns. A column of images
(``--images COLUMN --encoder RUN``) is read as embedding features made at import by a frozen encoder
(:mod:`medlens.models.image_encoder`; ``plan.sequence.images``), made again from the images at prediction.

ONNX export (:mod:`.export`) packs the visits and their mask into one input.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.errors import ConfigError, InputError
from medlens.tasks.base import Calibration, Task, implemented_in, register_task
from medlens.tasks.sequence.config import SequencePlan

if TYPE_CHECKING:
    from medlens.core.prediction import Prediction
    from medlens.core.progress import ProgressFn
    from medlens.data.dataset import Dataset
    from medlens.models.bundle import Bundle


@register_task
class SequenceTask(Task):
    name = "sequence"
    plan_type = SequencePlan
    model_output = "sequence"
    description = "one outcome per subject from the sequence of their visits (a table), attention over visits"
    batch_size = 1  # one input is a whole table of subjects
    fingerprint_images = 0
    table_importer = "visits"

    def check_dataset(self, dataset: Dataset) -> None:
        super().check_dataset(dataset)
        manifest = dataset.root / dataset.spec.manifest
        if len(dataset.spec.classes) != 2:
            raise InputError(dataset.root / "dataset.yaml", "a sequence dataset has two classes (a binary outcome)")
        for key in ("subject", "order", "target", "features", "feature_kinds"):
            if key not in dataset.spec.source:
                raise InputError(dataset.root / "dataset.yaml", f"source.{key} missing (import with 'import table')")
        if len({c.target for c in dataset.split("train")}) < 2:
            raise InputError(manifest, "the training split holds one outcome only")

    def fingerprint(self, dataset: Dataset, progress: ProgressFn | None = None) -> dict[str, Any]:
        """The features' encoding fitted on the training subjects' visits, and the visits per subject."""
        from medlens.tasks.sequence.table import dataset_visits, fit_features

        source = dataset.spec.source
        train = dataset.split("train")
        table = dataset_visits(dataset, train)
        names = json.loads(source["features"])
        features = fit_features(names, json.loads(source["feature_kinds"]), (r for v in table.subjects.values()
                                                                             for r in v))  # fmt: skip
        visits = Counter(len(v) for v in table.subjects.values())
        return {
            "sequence": {
                "subject": source["subject"],
                "order": source["order"],
                "order_kind": source.get("order_kind", "number"),
                "target": source["target"],
                "features": [f.model_dump() for f in features],
                "excluded": json.loads(source.get("excluded", "{}")),
                "images": [{"column": c} | r for c, r in json.loads(source.get("images", "{}")).items()],
                "max_visits": max(visits),
                "visits_per_subject": {str(k): v for k, v in sorted(visits.items())},
                "n_train_subjects": len(train),
            }
        }

    plan = implemented_in("medlens.tasks.sequence.planning:plan_sequence")
    build_network = implemented_in("medlens.tasks.sequence.module:build_network")
    prepare = implemented_in("medlens.tasks.sequence.training:prepare")
    loaders = implemented_in("medlens.tasks.sequence.training:loaders")
    module = implemented_in("medlens.tasks.sequence.module:SequenceModule")
    calibrate = implemented_in("medlens.tasks.sequence.training:calibrate")

    def card_lines(self, plan: Any, calibration: Calibration) -> list[str]:
        s = plan.sequence
        auc = calibration.summary.get("val_auc_ensemble")
        embedded = {n for i in s.images for n in i.features}
        tabular = [f.name for f in s.features if f.name not in embedded]
        lines = [
            f"Outcome: {plan.class_names[1]} vs {plan.class_names[0]} ({s.target} at the last visit), from up to "
            f"{s.max_visits} visits of {len(tabular)} tabular features ({', '.join(tabular)})"
            + "".join(f" and the {i.dim}-feature embedding of image column {i.column!r}" for i in s.images),
            f"Network: transformer encoder over visits ({s.layers} layers, width {s.d_model}), attention pooling; "
            f"ensemble validation AUC {'n/a' if auc is None else f'{auc:.3f}'}",
        ]
        lines += [f"Image encoder of {i.column!r} (frozen): {i.description}; {i.encoder} (weights SHA-256 "
                  f"{i.digest[:12]}...)" for i in s.images]  # fmt: skip
        return lines

    def bundle_files(self, plan: Any) -> dict[str, Path]:
        """Each image column's encoder (a bundle folder, or a pretrain folder), as ``encoders/<column>``."""
        from medlens.tasks.sequence.prediction import ENCODERS_FOLDER

        files = {}
        for image in plan.sequence.images:
            source = Path(image.encoder)
            inner = source / "bundle"
            files[f"{ENCODERS_FOLDER}/{image.column}"] = inner if (inner / "bundle.yaml").is_file() else source
        return files

    def read_input(self, item: Any, nonfinite: str = "refuse") -> Any:
        """A CSV of visits, read (its columns are checked against the plan in :meth:`predict`); a table already
        read passes through. ``nonfinite`` concerns image pixels: a missing number is imputed as in training."""
        from medlens.tasks.sequence.table import RawTable, VisitTable, read_raw

        return item if isinstance(item, RawTable | VisitTable) else read_raw(Path(item))

    def predict(self, bundle: Bundle, images: Sequence[Any], *, tta: bool = False) -> list[Prediction]:
        from medlens.tasks.sequence.prediction import predict_tables, read_table

        return list(predict_tables(bundle, [read_table(bundle.plan, item, bundle.root) for item in images]))

    def finish_predictions(self, folder: Path, predictions: Sequence[Prediction]) -> None:
        from medlens.tasks.sequence.prediction import write_attention

        write_attention(folder, predictions)

    evaluate = implemented_in("medlens.tasks.sequence.evaluation:evaluate")

    export_graph = implemented_in("medlens.tasks.sequence.export:export_graph")

    def findings(self, prediction: Prediction, bundle: Bundle) -> list[dict[str, Any]]:
        """Each class's probability and the predicted class at the bundle's threshold (the positive class's)."""
        from medlens.core.findings import rounded
        from medlens.tasks.sequence.prediction import SequencePrediction

        if not isinstance(prediction, SequencePrediction):
            raise ConfigError("task", f"not a sequence prediction: {type(prediction).__name__}")
        p, names = prediction.probability, prediction.class_names
        threshold = 0.5 if bundle.threshold is None else bundle.threshold
        return [
            {"kind": "probability", "class": names[0], "probability": rounded(1 - p)},
            {"kind": "probability", "class": names[1], "probability": rounded(p)},
            {"kind": "predicted_class", "label": prediction.label, "threshold": rounded(threshold),
             "positive_class": names[1]},
        ]  # fmt: skip
