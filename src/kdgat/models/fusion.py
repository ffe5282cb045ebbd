"""Fusion of the VGAE anomaly score and the GAT attack probability.

The 15-d fusion state per window (VGAE errors and latent statistics, GAT
probabilities, embedding statistics, confidences) is assembled elsewhere;
these modules only map a ``(B, state_dim)`` state to a decision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp(in_dim: int, hidden: int, num_layers: int, out_dim: int, dropout: float) -> nn.Sequential:
    """``num_layers`` hidden layers of width ``hidden`` (ReLU), then a linear output."""
    if num_layers < 1:
        raise ValueError(f"num_layers={num_layers}: need at least one hidden layer")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def fuse(vgae_score: Tensor, gat_prob: Tensor, alpha: Tensor | float) -> Tensor:
    r"""Fused attack score :math:`(1 - \alpha)\, s_{vgae} + \alpha\, p_{gat}`.

    ``vgae_score`` must already be on the scale of a probability (e.g.
    normalised by validation statistics) for the mix to be meaningful. The
    same rule is used to train and to evaluate the fusion agent.

    Shapes:
        - **input:** ``vgae_score`` :math:`(B,)`, ``gat_prob`` :math:`(B,)`,
          ``alpha`` scalar or :math:`(B,)`
        - **output:** :math:`(B,)`
    """
    return (1.0 - alpha) * vgae_score + alpha * gat_prob


class DQNFusion(nn.Module):
    r"""Q-network that picks the fusion weight :math:`\alpha` per window
    (deep Q-learning, Mnih et al., "Human-level control through deep
    reinforcement learning", Nature 2015).

    Action :math:`a` stands for :math:`\alpha_a = a / (\text{num\_actions} - 1)`,
    so the default 21 actions are :math:`\alpha \in \{0, 0.05, \dots, 1\}`.

    Args:
        state_dim (int, optional): Width of the fusion state. (default: ``15``)
        hidden (int, optional): Width of each hidden layer. (default: ``576``)
        num_layers (int, optional): Number of hidden layers. (default: ``3``)
        num_actions (int, optional): Number of discrete :math:`\alpha` values,
            at least 2. (default: ``21``)
        dropout (float, optional): Dropout after each hidden layer.
            (default: ``0.0``)

    Shapes:
        - **input:** state :math:`(B, \text{state\_dim})`
        - **output:** Q-values :math:`(B, \text{num\_actions})`
    """

    def __init__(
        self,
        state_dim: int = 15,
        hidden: int = 576,
        num_layers: int = 3,
        num_actions: int = 21,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_actions < 2:
            raise ValueError(f"num_actions={num_actions}: need >= 2 to span alpha in [0, 1]")
        self.q_network = _mlp(state_dim, hidden, num_layers, num_actions, dropout)
        # A buffer, not a parameter: moves with .to(device) and is saved in
        # the state dict, so a loaded agent cannot disagree about its actions.
        self.register_buffer("_alphas", torch.linspace(0.0, 1.0, num_actions))

    def alphas(self) -> Tensor:
        """The ``num_actions`` fusion weights, ``(num_actions,)``."""
        return self._alphas

    def forward(self, state: Tensor) -> Tensor:
        return self.q_network(state)

    @torch.no_grad()
    def greedy_alpha(self, state: Tensor) -> Tensor:
        """:math:`\\alpha` of the highest-valued action per state, ``(B,)``."""
        return self._alphas[self(state).argmax(dim=-1)]


class MLPFusion(nn.Module):
    r"""Supervised fusion baseline: an MLP mapping the fusion state straight to
    an attack logit (no reinforcement learning, no :math:`\alpha`).

    Args:
        state_dim (int, optional): Width of the fusion state. (default: ``15``)
        hidden (int, optional): Width of each hidden layer. (default: ``576``)
        num_layers (int, optional): Number of hidden layers. (default: ``3``)
        dropout (float, optional): Dropout after each hidden layer.
            (default: ``0.0``)

    Shapes:
        - **input:** state :math:`(B, \text{state\_dim})`
        - **output:** attack logit :math:`(B,)`
    """

    def __init__(
        self, state_dim: int = 15, hidden: int = 576, num_layers: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.mlp = _mlp(state_dim, hidden, num_layers, 1, dropout)

    def forward(self, state: Tensor) -> Tensor:
        return self.mlp(state).squeeze(-1)
