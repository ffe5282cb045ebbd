"""The ``unsupervised`` stage: the VGAE anomaly detector, with optional distillation."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from kdgat.data.batch import GraphBatch
from kdgat.models.distillation import latent_kd_loss, reconstruction_kd_loss
from kdgat.training.base import StageModule
from kdgat.training.settings import DistillationSettings, OptimizerSettings, SchedulerSettings


class UnsupervisedModule(StageModule):
    """Trains a :class:`~kdgat.models.vgae.VGAE`: MSE(features) + 0.1·CE(id) + 0.05·BCE(neighbour
    ids) + 0.01·KL. The window score is the VGAE's per-graph anomaly score. Labels are never used
    in the loss (``mode=normals_only`` trains on benign windows only).

    With a teacher: ``loss = (1 - alpha) * VGAE + alpha * (0.5 * MSE(P z_s, z_t) + 0.5 *
    MSE(x̂_s, x̂_t))`` with a learned projection P from the student's latent width to the
    teacher's (upstream's recipe); ``topology_preserving`` adds ``lsp_weight * LSP`` on the latents.

    Args:
        network: builds the VGAE from the data dimensions (a partial of ``kdgat.models.builders.vgae``).
        num_ids, in_channels, edge_dim: the data dimensions.
        optimizer, scheduler, distillation, monitor: see :class:`~kdgat.training.base.StageModule`.
    """

    def __init__(self, network: Callable[..., nn.Module], num_ids: int, in_channels: int,
                 edge_dim: int, optimizer: OptimizerSettings, scheduler: SchedulerSettings,
                 distillation: DistillationSettings, monitor: str = "val/loss"):
        super().__init__(optimizer, scheduler, distillation, monitor)
        self.network = self.build_network(network, num_ids=num_ids, in_channels=in_channels,
                                          edge_dim=edge_dim)
        self.projection: nn.Module | None = None

    def attach_teacher(self, teacher: nn.Module) -> None:
        super().attach_teacher(teacher)
        # Part of the training objective only; not counted as the student's size.
        self.projection = nn.Linear(self.network.mu.out_features, teacher.mu.out_features)

    def _args(self, batch: GraphBatch):
        return (batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)

    def losses(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        out = self.network(*self._args(batch))
        parts = self.network.loss_parts(out, batch.x, batch.node_id, batch.edge_index)
        losses = {"task_loss": parts.pop("total"), **parts}
        if self.teacher is None or not self.distillation.enabled:
            losses["loss"] = losses["task_loss"]
            return losses
        with torch.no_grad():
            teacher = self.teacher(*self._args(batch))
        losses["kd_latent_loss"] = latent_kd_loss(out.mu, teacher.mu, self.projection)
        losses["kd_recon_loss"] = reconstruction_kd_loss(out.x_hat, teacher.x_hat)
        losses["kd_loss"] = 0.5 * losses["kd_latent_loss"] + 0.5 * losses["kd_recon_loss"]
        loss = self.mix(losses["task_loss"], losses["kd_loss"])
        loss = self.add_topology_term(losses, loss, out.mu, teacher.mu, batch.edge_index)
        losses["loss"] = loss
        return losses

    @torch.no_grad()
    def score(self, batch: GraphBatch) -> torch.Tensor:
        """Anomaly score per window (higher = more anomalous)."""
        return self.network.anomaly_score(*self._args(batch))

    @torch.no_grad()
    def score_evidence(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(anomaly score, its log)``: errors span orders of magnitude across recordings."""
        score = self.score(batch)
        return score, torch.log(score.clamp_min(1e-12))
