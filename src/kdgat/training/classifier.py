"""The ``classifier`` stage: the GAT window classifier, with optional distillation."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from kdgat.data.batch import GraphBatch
from kdgat.models.distillation import hinton_kd_loss
from kdgat.training.base import StageModule
from kdgat.training.settings import DistillationSettings, OptimizerSettings, SchedulerSettings


class ClassifierModule(StageModule):
    """Trains a :class:`~kdgat.models.gat.GATClassifier` with cross-entropy on window labels.

    With a teacher attached: ``loss = (1 - alpha) * CE + alpha * KD`` where KD is Hinton's KL on the
    two softened logits (temperature T, scaled by T²); ``topology_preserving`` adds
    ``lsp_weight * LSP`` on the jumping-knowledge node embeddings. Each term is logged.

    Args:
        network: builds the GAT from the data dimensions (a partial of ``kdgat.models.builders.gat``).
        num_ids, in_channels, edge_dim: the data dimensions (from the datamodule).
        optimizer, scheduler, distillation, monitor: see :class:`~kdgat.training.base.StageModule`.
    """

    def __init__(self, network: Callable[..., torch.nn.Module], num_ids: int, in_channels: int,
                 edge_dim: int, optimizer: OptimizerSettings, scheduler: SchedulerSettings,
                 distillation: DistillationSettings, monitor: str = "val/loss"):
        super().__init__(optimizer, scheduler, distillation, monitor)
        self.network = self.build_network(network, num_ids=num_ids, in_channels=in_channels,
                                          edge_dim=edge_dim)

    def _run(self, model, batch: GraphBatch):
        return model.embed(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                           batch.num_graphs)

    def losses(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        out = self._run(self.network, batch)
        task = F.cross_entropy(out.logits, batch.y)
        losses = {"task_loss": task}
        if self.teacher is None or not self.distillation.enabled:
            losses["loss"] = task
            return losses
        with torch.no_grad():
            teacher = self._run(self.teacher, batch)
        losses["kd_loss"] = hinton_kd_loss(out.logits, teacher.logits, self.distillation.temperature)
        loss = self.mix(task, losses["kd_loss"])
        loss = self.add_topology_term(losses, loss, out.node_emb, teacher.node_emb, batch.edge_index)
        losses["loss"] = loss
        return losses

    def _logits(self, batch: GraphBatch) -> torch.Tensor:
        return self.network(batch.x, batch.node_id, batch.edge_index, batch.edge_attr,
                            batch.batch, batch.num_graphs)

    @torch.no_grad()
    def score(self, batch: GraphBatch) -> torch.Tensor:
        """Probability of the attack class per window."""
        return self._logits(batch).softmax(dim=-1)[:, 1]

    @torch.no_grad()
    def score_evidence(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(attack probability, logit margin)`` per window: the margin is the same ranking on a
        scale that does not saturate (the evidence of :mod:`kdgat.evaluation.protocols`)."""
        logits = self._logits(batch)
        return logits.softmax(dim=-1)[:, 1], logits[:, 1] - logits[:, 0]
