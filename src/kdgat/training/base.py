"""What every training stage shares: optimizers, schedules, validation scores, frozen teachers."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from kdgat.data.batch import GraphBatch
from kdgat.training.monitors import LABEL_MONITORS, MONITOR_MODES, check_monitor, one_class_message
from kdgat.training.settings import DistillationSettings, OptimizerSettings, SchedulerSettings


def frozen(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients: how teachers and fusion inputs are used."""
    module.eval()
    module.requires_grad_(False)
    return module


class StageModule(L.LightningModule):
    """Base of the stages. Subclasses implement ``losses(batch) -> dict`` (with ``"loss"``) and
    ``score(batch) -> (G,)`` where a higher score means "more likely an attack".

    Validation logs the losses and, from the scores of every validation window, ``val/auroc``,
    ``val/auprc`` (average precision) and ``val/f1`` (the best F1 over all thresholds, what
    ``threshold_rule=f1`` reaches; :func:`kdgat.evaluation.metrics.selection_metrics`), NaN where
    undefined. The test-time evaluation (threshold on validation, metrics per scenario) runs
    outside the module on ``score``.

    Args:
        optimizer: optimizer settings.
        scheduler: learning-rate schedule settings.
        distillation: distillation settings (the teacher itself is attached by the task).
        monitor: validation metric for schedules, early stopping and the best checkpoint, one of
            :data:`kdgat.training.monitors.MONITOR_MODES` (the config's top-level ``monitor``).
            A label-based one refuses an epoch whose validation windows lack a class.
    """

    monitor_mode = MONITOR_MODES

    def __init__(self, optimizer: OptimizerSettings, scheduler: SchedulerSettings,
                 distillation: DistillationSettings, monitor: str = "val/loss"):
        super().__init__()
        check_monitor(monitor)
        self.optimizer_settings, self.scheduler_settings = optimizer, scheduler
        self.distillation = distillation
        self.monitor = monitor
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        # Kept out of the module tree: a teacher is neither trained nor saved with the student.
        self.__dict__["teacher"] = None

    def build_network(self, network, **data_dims) -> nn.Module:
        """Build the stage's network from its builder and the data dimensions, which are saved in
        the checkpoint so a later run can rebuild it strictly (teachers, fusion inputs)."""
        self.save_hyperparameters({"data_dims": data_dims})
        return network(**data_dims)

    # --- teachers -------------------------------------------------------------------------
    def attach_teacher(self, teacher: nn.Module) -> None:
        self.__dict__["teacher"] = frozen(teacher)

    def frozen_modules(self) -> list[nn.Module]:
        """The modules this stage uses but neither trains nor saves (the teacher)."""
        return [] if self.teacher is None else [self.teacher]

    def _apply(self, fn, *args, **kwargs):
        # The frozen modules are outside the module tree, so ``.to()``/``.cpu()`` would leave them
        # behind: after a GPU fit Lightning moves the module back to the CPU, where evaluation
        # then runs, and a fusion stage's inputs must be there too.
        super()._apply(fn, *args, **kwargs)
        for module in self.frozen_modules():
            module._apply(fn, *args, **kwargs)
        return self

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def mix(self, task: torch.Tensor, distill: torch.Tensor) -> torch.Tensor:
        """``(1 - alpha) * task + alpha * distill`` (alpha on the distillation term, as upstream)."""
        alpha = self.distillation.alpha
        return (1.0 - alpha) * task + alpha * distill

    def add_topology_term(self, losses: dict, loss: torch.Tensor, student_emb: torch.Tensor,
                          teacher_emb: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """With ``topology_preserving``: add ``lsp_weight * LSP`` on node embeddings (Local
        Structure Preserving distillation, Yang et al., CVPR 2020), logged as ``lsp_loss``."""
        if self.distillation.kind != "topology_preserving":
            return loss
        from kdgat.models.distillation import lsp_loss

        losses["lsp_loss"] = lsp_loss(student_emb, teacher_emb, edge_index,
                                      kernel=self.distillation.lsp_kernel, sigma=self.distillation.lsp_sigma)
        return loss + self.distillation.lsp_weight * losses["lsp_loss"]

    # --- steps ----------------------------------------------------------------------------
    def losses(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def score(self, batch: GraphBatch) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: GraphBatch, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()},
                      batch_size=batch.num_graphs, on_step=False, on_epoch=True, prog_bar=False)
        return losses["loss"]

    def validation_step(self, batch: GraphBatch, batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=batch.num_graphs,
                      on_step=False, on_epoch=True)
        self._val_scores.append(self.score(batch).detach().float().cpu())
        self._val_labels.append(batch.y.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        from kdgat.evaluation.metrics import selection_metrics

        if not self._val_scores:
            return
        scores = torch.cat(self._val_scores).numpy()
        labels = torch.cat(self._val_labels).numpy()
        self._val_scores.clear()
        self._val_labels.clear()
        attacks = int(labels.sum())
        if (self.monitor in LABEL_MONITORS and not 0 < attacks < len(labels)
                and not (self._trainer is not None and self.trainer.sanity_checking)):
            # The whole split was checked before the run (kdgat.train); this is the part of it an
            # epoch saw (trainer.limit_val_batches). A NaN monitor would select nothing.
            raise ValueError(one_class_message(
                self.monitor, len(labels), attacks, "the validation this epoch saw")
                + ", or validate on more windows (trainer.limit_val_batches=null)")
        # Undefined with one class: logged as NaN, never as 0 (see UPSTREAM mistake 4).
        for name, value in selection_metrics(labels, scores).items():
            self.log(f"val/{name}", value)

    # --- optimization ---------------------------------------------------------------------
    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        settings = self.optimizer_settings
        params = self.trainable_parameters()
        if settings.name == "adam":
            optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
        elif settings.name == "adamw":
            optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                                        weight_decay=settings.weight_decay)
        schedule = self._schedule(optimizer)
        return [optimizer], ([schedule] if schedule else [])

    def _schedule(self, optimizer):
        settings = self.scheduler_settings
        warmup = settings.warmup_epochs
        epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer else 1
        if settings.name == "plateau":
            if warmup:
                raise ValueError("scheduler.warmup_epochs is not supported with scheduler.name=plateau")
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.monitor_mode[self.monitor], factor=settings.gamma,
                patience=settings.patience, min_lr=settings.min_lr)
            return {"scheduler": plateau, "monitor": self.monitor, "interval": "epoch"}

        def factor(epoch: int) -> float:
            scale = min(1.0, (epoch + 1) / (warmup + 1)) if warmup else 1.0
            after = max(epoch - warmup, 0)
            if settings.name == "cosine":
                span = max(epochs - warmup, 1)
                base = settings.min_lr / self.optimizer_settings.lr
                scale *= base + (1 - base) * 0.5 * (1 + math.cos(math.pi * min(after / span, 1.0)))
            elif settings.name == "step":
                scale *= settings.gamma ** (after // settings.step_size)
            return scale

        if settings.name == "none" and not warmup:
            return None
        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "epoch"}
