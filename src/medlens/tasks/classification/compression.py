"""A classifier's part in compression: the validation AUC of its ONNX graph (to accept an int8 graph), and the
student's training on a teacher bundle's softened probabilities (knowledge distillation, Hinton et al. 2015).

Distillation loss, per batch::

    soft_weight * T^2 * KL(teacher_T || student_T)  +  (1 - soft_weight) * CE(student, label)   (labelled images only)

``teacher_T`` is the mean over the teacher's members of ``softmax(logits / T)`` (a sigmoid per label for
multi-label, where the soft term is the binary cross-entropy against the teacher's probabilities, less its
entropy); ``T^2`` keeps the soft term's gradients on the scale of the hard one's. The teacher's outputs are
computed once, on the un-augmented images; the student sees them with the plan's augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from medlens.core.image import Image
from medlens.data.dataset import Case, Dataset
from medlens.models.bundle import Bundle
from medlens.tasks.base import Distillation, GraphCheck
from medlens.tasks.classification.config import ClassificationPlan, plan_of
from medlens.tasks.classification.module import ClassificationModule
from medlens.training.augment import augment_batch
from medlens.training.budget import BudgetSchedule
from medlens.training.images import ImageCases, normalize
from medlens.training.members import Member

GRAPH_BATCH = 64
GRAPH_MAX_CASES = 2048  # validation images scored per graph (all of them in the benchmarks' data sets)


def auc(y: np.ndarray, probabilities: np.ndarray, multilabel: bool) -> float:
    """ROC AUC (scikit-learn): binary on the positive class, one-vs-rest macro for several classes, macro over
    labels for multi-label."""
    from sklearn.metrics import roc_auc_score

    if multilabel:
        return float(roc_auc_score(y, probabilities, average="macro"))
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y, probabilities[:, 1]))
    k = probabilities.shape[1]
    return float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=list(range(k))))


def graph_check(bundle: Bundle, dataset: Dataset, cases: Sequence[Case]) -> GraphCheck:
    """Validation images in the graph's input form (resized, raw units) in batches of 64, scored by AUC."""
    from medlens.tasks.classification.training import targets_of
    from medlens.training.images import read_input

    chosen = list(cases)[:GRAPH_MAX_CASES]
    x = np.stack([read_input(dataset, c, bundle.plan.data) for c in chosen]).astype(np.float32)  # (N, C, *size)
    y = targets_of(dataset, chosen).numpy()
    batches = [x[i : i + GRAPH_BATCH] for i in range(0, len(x), GRAPH_BATCH)]
    multilabel = plan_of(bundle).multilabel

    def score(run: Callable[[np.ndarray], np.ndarray]) -> float:
        return auc(y, np.concatenate([run(b) for b in batches]), multilabel)

    return GraphCheck(metric="auc", inputs=batches, score=score)


@torch.inference_mode()
def teacher_probabilities(teacher: Bundle, x: torch.Tensor, temperature: float, batch_size: int = 64) -> torch.Tensor:
    """The teacher's softened probabilities (N, K): every member's ``softmax(logits / T)`` (sigmoid for multi-label),
    averaged, for prepared, not yet normalised inputs (N, C, *size)."""
    from medlens.tasks.classification.module import probabilities
    from medlens.tasks.classification.prediction import member_logits

    logits = torch.from_numpy(member_logits(teacher, x, batch_size))  # (M, N, K)
    return probabilities(logits.flatten(0, 1) / temperature, plan_of(teacher).multilabel).view(logits.shape).mean(0)


class DistillationModule(ClassificationModule):
    """The classifier's training step with the distillation loss of this module's docstring; validation as in
    training (AUC on the labelled validation cases)."""

    def __init__(
        self, plan: ClassificationPlan, budget: BudgetSchedule | None, temperature: float, soft_weight: float
    ) -> None:
        super().__init__(plan, budget)
        self.temperature, self.soft_weight = temperature, soft_weight

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, soft, y, labelled = batch
        x = augment_batch(normalize(x, self.plan.data), self.plan.augment)
        logits = self(x)
        t = self.temperature
        if self.plan.multilabel:
            p = torch.sigmoid(logits / t)
            entropy = F.binary_cross_entropy(soft, soft, reduction="none")
            kl = (F.binary_cross_entropy(p, soft, reduction="none") - entropy).sum(1).mean()
        else:
            kl = F.kl_div(F.log_softmax(logits / t, dim=1), soft, reduction="batchmean")
        loss = self.soft_weight * t * t * kl
        if bool(labelled.any()) and self.soft_weight < 1:
            loss = loss + (1 - self.soft_weight) * self.loss(logits[labelled], y[labelled])
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        self.log("train_kl", kl, on_step=False, on_epoch=True, batch_size=len(x))
        return loss


def distiller(
    teacher: Bundle,
    plan: ClassificationPlan,
    prepared: ImageCases,
    member: Member,
    unlabeled: Sequence[Image],
    *,
    temperature: float,
    soft_weight: float,
) -> Distillation:
    """Training batches of (image, teacher's soft probabilities, label, labelled?) over the member's training
    cases and the unlabeled images; validation on the member's validation cases with their labels."""
    from medlens.training.images import to_input

    x = prepared.inputs(member.train)  # (N, C, *size) raw units
    _, y, _ = prepared.subset(member.train)
    labelled = torch.ones(len(x), dtype=torch.bool)
    if unlabeled:
        extra = torch.stack([torch.from_numpy(to_input(image, plan.data)) for image in unlabeled])
        x = torch.cat([x, extra])
        y = torch.cat([y, torch.zeros((len(extra), *y.shape[1:]), dtype=y.dtype)])
        labelled = torch.cat([labelled, torch.zeros(len(extra), dtype=torch.bool)])
    soft = teacher_probabilities(teacher, x, temperature)
    t = plan.train
    train = DataLoader(
        TensorDataset(x, soft, y, labelled),
        batch_size=t.batch_size,
        shuffle=True,
        drop_last=len(x) > t.batch_size,
        generator=torch.Generator().manual_seed(t.seed),
    )
    val = prepared.loader(member.val, batch_size=max(t.batch_size, 64), shuffle=False)
    loss = (
        f"{soft_weight:g} x T^2 x KL(teacher || student) at temperature T = {temperature:g} on {len(x)} images "
        f"({int(labelled.sum())} labelled, {len(x) - int(labelled.sum())} unlabeled) + {1 - soft_weight:g} x "
        "the task's own loss on the labels"
    )
    return Distillation(
        train=train,
        val=val,
        module=lambda budget: DistillationModule(plan, budget, temperature, soft_weight),
        loss=loss,
    )
