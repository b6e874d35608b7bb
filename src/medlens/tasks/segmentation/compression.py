"""A segmenter's part in compression: the validation Dice of its ONNX graph, to accept or refuse an int8 graph.

The graph takes normalised patches (the sliding window stays outside it), so each validation case is prepared as
for training (normalised, reoriented, resampled), cut into MONAI's sliding windows, and the graph's probabilities
are stitched back by MONAI's ``sliding_window_inference``; Dice is measured on the network's grid against the
prepared label map, without keep-largest-component (the figure compares graphs, not the whole pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch

from medlens.data.dataset import Case, Dataset
from medlens.models.bundle import Bundle
from medlens.tasks.base import GraphCheck
from medlens.tasks.segmentation.config import SegmentationPlan

GRAPH_MAX_CASES = 16  # validation cases scored per graph


def graph_check(bundle: Bundle, dataset: Dataset, cases: Sequence[Case]) -> GraphCheck:
    """The sliding windows of up to 16 validation cases (batches of ``sw_batch_size`` patches), scored by the mean
    foreground Dice of the stitched label maps."""
    from monai.inferers import sliding_window_inference

    from medlens.tasks.segmentation.metrics import dice_per_class
    from medlens.tasks.segmentation.training import PreparedCases

    plan = cast(SegmentationPlan, bundle.plan)
    seg, k = plan.segmentation, len(plan.class_names)
    reader = PreparedCases(dataset, plan.model_copy(update={"data": plan.data.model_copy(update={"cache": "none"})}),
                           [], None)  # fmt: skip
    prepared = [reader.read(case) for case in list(cases)[:GRAPH_MAX_CASES]]

    def stitch(image: np.ndarray, predictor: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        out = sliding_window_inference(
            torch.from_numpy(image)[None].float(),  # (1, C, *spatial)
            roi_size=plan.data.input_size,
            sw_batch_size=seg.sw_batch_size,
            predictor=predictor,
            overlap=seg.sw_overlap,
            mode=seg.sw_mode,
        )
        return cast(torch.Tensor, out)[0]  # (K, *spatial)

    windows: list[np.ndarray] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        windows.append(x.numpy().astype(np.float32))
        return torch.zeros((x.shape[0], k, *x.shape[2:]))

    for data in prepared:
        stitch(data["image"], record)

    def score(run: Callable[[np.ndarray], np.ndarray]) -> float:
        dice = []
        for data in prepared:
            probabilities = stitch(data["image"], lambda x: torch.from_numpy(run(x.numpy())))
            dice.append(dice_per_class(probabilities.argmax(0).numpy(), data["label"][0], k))
        return float(np.nanmean(np.stack(dice)))

    return GraphCheck(metric="dice", inputs=windows, score=score)
