"""The visit transformer and its training step.

Each visit (its encoded measurements) is projected to ``d_model`` and given a learned embedding of its position in
the subject's sequence (first visit, second, ...); a PyTorch ``TransformerEncoder`` lets visits attend to each
other, with padding masked out; a learned attention pooling (Ilse et al., 2018: a score per visit, softmax over the
subject's real visits) weighs the visits into one vector that a linear head turns into the outcome's logit. The
pooling weights are the attention over visits shown per subject: they sum to 1 over real visits, padding gets 0.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medlens.tasks.sequence.config import SequencePlan
from medlens.training.budget import BudgetSchedule


class VisitTransformer(nn.Module):
    """Visits ``(B, V, F)`` and their mask ``(B, V)`` (True: a real visit) to a logit ``(B,)`` and the attention
    over visits ``(B, V)``."""

    def __init__(self, width: int, max_visits: int, d_model: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(width, d_model)
        self.position = nn.Embedding(max_visits, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            activation=nn.SiLU(),
            batch_first=True,
            norm_first=True,
        )  # SiLU: also keeps PyTorch off its fused inference path, which ONNX cannot export
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.score = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh(), nn.Linear(d_model, 1))
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.embed(x) + self.position(positions)[None]
        h = self.encoder(h, src_key_padding_mask=~mask)
        scores = self.score(h)[..., 0].masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1)
        attention = torch.nan_to_num(attention, nan=0.0)  # a subject with no visit: no weights (never fed)
        pooled = (attention[..., None] * h).sum(dim=1)
        return self.head(pooled)[:, 0], attention


def build_network(plan: SequencePlan) -> nn.Module:
    s = plan.sequence
    return VisitTransformer(s.width, s.max_visits, s.d_model, s.heads, s.layers, s.dropout)


class SequenceModule(pl.LightningModule):
    """Binary cross-entropy on the outcome; validation AUC (the monitor) and loss."""

    def __init__(self, plan: SequencePlan, budget: BudgetSchedule | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"plan": plan.model_dump()})
        self.plan = plan
        self.net = build_network(plan)
        self.budget = budget
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x, mask)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, mask, y = batch
        logit, _ = self(x, mask)
        loss = F.binary_cross_entropy_with_logits(logit, y.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, mask, y = batch
        logit, _ = self(x, mask)
        self.log("val_loss", F.binary_cross_entropy_with_logits(logit, y.float()), on_epoch=True, batch_size=len(x))
        self._val.append((torch.sigmoid(logit).cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        from sklearn.metrics import roc_auc_score

        score = torch.cat([p for p, _ in self._val]).float().numpy()
        truth = torch.cat([t for _, t in self._val]).numpy()
        self._val.clear()
        auc = float(roc_auc_score(truth, score)) if len(np.unique(truth)) == 2 else 0.5
        self.log("val_auc", auc, prog_bar=True)

    def configure_optimizers(self) -> Any:
        from medlens.training.optimization import configure_optimizer

        return configure_optimizer(self.net, self.plan.optim, self.budget)
