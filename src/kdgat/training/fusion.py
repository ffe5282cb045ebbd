"""The ``fusion`` stage: an agent that weighs a frozen VGAE against a frozen GAT per window.

The state (15 values per window) summarizes both inputs. The DQN picks α from 21 values and the
fused score is ``(1 - α) · v + α · p`` where ``v`` is the VGAE score mapped to [0, 1] by its
empirical distribution on benign training windows and ``p`` the GAT's attack probability. Each
window is a one-step episode whose reward is ``1 - |label - fused|``: the agent is trained on the
fused score itself, which is exactly what evaluation thresholds (upstream trained with one rule,
α > 0.5, and evaluated with another). The MLP baseline maps the state straight to a logit.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdgat.data.batch import GraphBatch
from kdgat.models.distillation import hinton_kd_loss, q_value_kd_loss
from kdgat.models.fusion import fuse
from kdgat.training.base import StageModule, frozen
from kdgat.training.settings import (DistillationSettings, FusionSettings, OptimizerSettings,
                                     SchedulerSettings)

STATE_FEATURES = (
    "vgae_cdf", "vgae_log_score", "vgae_feature_error", "vgae_id_error", "vgae_neighbour_error",
    "vgae_latent_mean", "vgae_latent_std", "gat_prob", "gat_margin", "gat_entropy",
    "gat_emb_mean", "gat_emb_std", "gat_confidence", "vgae_confidence", "agreement",
)


class FusionModule(StageModule):
    """Trains the fusion agent (``kind="dqn"``) or the MLP baseline (``kind="mlp"``).

    Args:
        network: builds the agent from ``state_dim`` (a partial of ``builders.dqn`` or ``builders.mlp``).
        kind: ``dqn`` or ``mlp``.
        fusion: exploration and replay settings (DQN).
        optimizer, scheduler, distillation, monitor: see :class:`~kdgat.training.base.StageModule`.
    """

    def __init__(self, network: Callable[..., nn.Module], kind: str, fusion: FusionSettings,
                 optimizer: OptimizerSettings, scheduler: SchedulerSettings,
                 distillation: DistillationSettings, monitor: str = "val/loss"):
        super().__init__(optimizer, scheduler, distillation, monitor)
        if kind not in ("dqn", "mlp"):
            raise ValueError(f"fusion kind={kind!r}: choose 'dqn' or 'mlp'")
        self.kind, self.fusion = kind, fusion
        self.network = self.build_network(network, state_dim=len(STATE_FEATURES))
        # Sorted VGAE scores of benign training windows: the map of raw scores to [0, 1]. A
        # buffer, so a loaded checkpoint scores exactly as the trained one did.
        self.register_buffer("vgae_reference", torch.zeros(0))
        self.__dict__["inputs"] = None
        self._replay: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._replay_size = 0

    def attach_inputs(self, vgae: nn.Module, gat: nn.Module, vgae_reference: np.ndarray) -> None:
        """The frozen VGAE and GAT to fuse, and the VGAE's benign training scores."""
        self.__dict__["inputs"] = (frozen(vgae), frozen(gat))
        self.vgae_reference = torch.as_tensor(np.sort(vgae_reference), dtype=torch.float32)

    def frozen_modules(self) -> list[nn.Module]:
        return super().frozen_modules() + list(self.inputs or ())

    def on_fit_start(self) -> None:
        super().on_fit_start()
        for model in self.inputs:
            model.to(self.device)

    @torch.no_grad()
    def states(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(state (G, 15), v (G,), p (G,))`` for a batch of windows."""
        vgae, gat = self.inputs
        args = (batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
        scores = vgae.graph_scores(*args)
        out = gat.embed(*args)
        reference = self.vgae_reference
        v = torch.searchsorted(reference, scores.score.contiguous()).float() / max(len(reference), 1)
        probs = out.logits.softmax(-1)
        p = probs[:, 1]
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        state = torch.stack([
            v, torch.log1p(scores.score.clamp_min(0)), scores.feature_error, scores.id_error,
            scores.neighbour_error, scores.latent_mean, scores.latent_std, p,
            out.logits[:, 1] - out.logits[:, 0], entropy, out.graph_emb.mean(-1),
            out.graph_emb.std(-1), (p - 0.5).abs() * 2, (v - 0.5).abs() * 2, 1 - (v - p).abs(),
        ], dim=-1)
        return state, v, p

    def _epsilon(self) -> float:
        f = self.fusion
        progress = min(self.current_epoch / max(f.epsilon_decay_epochs, 1), 1.0)
        return f.epsilon_start + (f.epsilon_end - f.epsilon_start) * progress

    def losses(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        state, v, p = self.states(batch)
        label = batch.y.float()
        if self.kind == "mlp":
            logit = self.network(state)
            losses = {"task_loss": F.binary_cross_entropy_with_logits(logit, label)}
            if self.teacher is not None and self.distillation.enabled:
                with torch.no_grad():
                    teacher_logit = self.teacher(state)
                two = lambda z: torch.stack([torch.zeros_like(z), z], dim=-1)  # noqa: E731
                losses["kd_loss"] = hinton_kd_loss(two(logit), two(teacher_logit),
                                                   self.distillation.temperature)
        else:
            losses = self._dqn_losses(state, v, p, label)
        losses["loss"] = (self.mix(losses["task_loss"], losses["kd_loss"]) if "kd_loss" in losses
                          else losses["task_loss"])
        return losses

    def _dqn_losses(self, state, v, p, label) -> dict[str, torch.Tensor]:
        alphas = self.network.alphas()
        q = self.network(state)
        if self.training:
            # Explore ε-greedily, remember the one-step transitions, learn from a replay sample.
            greedy = q.detach().argmax(-1)
            random = torch.randint(len(alphas), greedy.shape, device=q.device)
            explore = torch.rand(greedy.shape, device=q.device) < self._epsilon()
            action = torch.where(explore, random, greedy)
            reward = 1.0 - (label - fuse(v, p, alphas[action])).abs()
            self._remember(state, action, reward)
            state, action, reward = self._sample(len(state))
            q = self.network(state)
        else:
            # Validation: the reward of the greedy action, which is what evaluation uses.
            action = q.argmax(-1)
            reward = 1.0 - (label - fuse(v, p, alphas[action])).abs()
        losses = {"task_loss": F.mse_loss(q.gather(1, action[:, None]).squeeze(1), reward),
                  "reward": reward.mean()}
        if self.teacher is not None and self.distillation.enabled:
            with torch.no_grad():
                teacher_q = self.teacher(state)
            losses["kd_loss"] = q_value_kd_loss(q, teacher_q, self.distillation.temperature)
        return losses

    def _remember(self, state, action, reward) -> None:
        self._replay.append((state.detach(), action.detach(), reward.detach()))
        self._replay_size += len(state)
        while self._replay_size - len(self._replay[0][0]) >= self.fusion.replay_size:
            self._replay_size -= len(self._replay.pop(0)[0])

    def _sample(self, minimum: int):
        states, actions, rewards = (torch.cat(parts) for parts in zip(*self._replay))
        count = max(self.fusion.replay_batch, minimum)
        pick = torch.randint(len(states), (count,), device=states.device)
        return states[pick], actions[pick], rewards[pick]

    @torch.no_grad()
    def score(self, batch: GraphBatch) -> torch.Tensor:
        """The fused attack score per window."""
        state, v, p = self.states(batch)
        if self.kind == "mlp":
            return torch.sigmoid(self.network(state))
        return fuse(v, p, self.network.greedy_alpha(state))

    @torch.no_grad()
    def score_evidence(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fused score, its logit)``, the logit clipped at 1e-6 from 0 and 1."""
        score = self.score(batch)
        return score, torch.logit(score.clamp(1e-6, 1 - 1e-6))
