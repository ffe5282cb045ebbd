"""Variational graph auto-encoder: learns benign windows, scores anomalous ones."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, global_mean_pool

# exp(logvar) overflows float32 near 88; a bound far below keeps the KL finite
# when an untrained encoder emits large values.
_LOGVAR_MAX = 20.0


class VGAEOutput(NamedTuple):
    """Per-node outputs of :class:`VGAE` (all first dimensions are ``N``).

    Attributes:
        x_hat: ``(N, F)`` reconstructed continuous features.
        id_logits: ``(N, num_ids)`` logits of each node's own CAN id.
        neighbour_logits: ``(N, num_ids)`` multi-label logits of the ids of
            each node's neighbours.
        mu: ``(N, latent_dim)`` posterior means.
        logvar: ``(N, latent_dim)`` posterior log-variances.
        z: ``(N, latent_dim)`` sampled latent in training, ``mu`` in eval.
    """

    x_hat: Tensor
    id_logits: Tensor
    neighbour_logits: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


class VGAEGraphScores(NamedTuple):
    """Per-graph quantities of :meth:`VGAE.graph_scores` (all of shape ``(G,)``)."""

    score: Tensor
    feature_error: Tensor
    id_error: Tensor
    neighbour_error: Tensor
    latent_mean: Tensor
    latent_std: Tensor


def neighbour_id_targets(node_id: Tensor, edge_index: Tensor, num_ids: int) -> Tensor:
    """Multi-hot ``(N, num_ids)`` matrix: row ``v`` marks the CAN ids of every
    node joined to ``v`` by an edge in either direction (frame order is
    directed, but "which ids occur next to this one" is symmetric)."""
    target = node_id.new_zeros((node_id.numel(), num_ids), dtype=torch.float32)
    src, dst = edge_index
    target[src, node_id[dst]] = 1.0
    target[dst, node_id[src]] = 1.0
    return target


class VGAE(nn.Module):
    r"""Variational graph auto-encoder over CAN window graphs (Kipf & Welling,
    "Variational Graph Auto-Encoders", 2016) with a GAT encoder and
    feature/id decoders instead of an adjacency decoder.

    The encoder embeds each node's CAN id, concatenates it with the continuous
    features, and applies GAT layers with edge features; two linear maps give
    :math:`\mu` and :math:`\log\sigma^2`. Training samples
    :math:`z = \mu + \sigma \odot \epsilon`; evaluation uses :math:`z = \mu`.
    From :math:`z` an MLP reconstructs the features, one head predicts the
    node's own id and one the multi-hot set of its neighbours' ids:

    .. math::
        \mathcal{L} = \mathrm{MSE}(\hat{x}, x)
        + w_{id}\,\mathrm{CE}(\text{id})
        + w_{nb}\,\mathrm{BCE}(\text{neighbour ids})
        + w_{kl}\,\mathrm{KL}(q(z) \,\|\, \mathcal{N}(0, I))

    Args:
        num_ids (int): CAN-id vocabulary size (known ids plus OOV buckets).
        in_channels (int): Number of continuous node features ``F``.
        edge_dim (int): Number of edge features ``D``.
        emb_dim (int, optional): Width of the CAN-id embedding. (default: ``32``)
        hidden (Sequence[int], optional): Total output width of each GAT layer
            (split evenly over the heads, which are concatenated).
            (default: ``(480, 240)``)
        latent_dim (int, optional): Width of :math:`z`. (default: ``48``)
        heads (int, optional): Attention heads per layer; must divide every
            entry of ``hidden``. (default: ``4``)
        dropout (float, optional): Dropout between encoder layers and on
            attention. (default: ``0.1``)
        id_weight (float, optional): :math:`w_{id}`. (default: ``0.1``)
        neighbour_weight (float, optional): :math:`w_{nb}`. (default: ``0.05``)
        kl_weight (float, optional): :math:`w_{kl}`. (default: ``0.01``)
        score_id_weight (float, optional): Weight of the id cross-entropy in
            the anomaly score. (default: ``0.1``)

    Shapes:
        - **input:** as :class:`~kdgat.models.gat.GATClassifier`
        - **output:** :class:`VGAEOutput` of per-node tensors
    """

    def __init__(
        self,
        num_ids: int,
        in_channels: int,
        edge_dim: int,
        emb_dim: int = 32,
        hidden: Sequence[int] = (480, 240),
        latent_dim: int = 48,
        heads: int = 4,
        dropout: float = 0.1,
        id_weight: float = 0.1,
        neighbour_weight: float = 0.05,
        kl_weight: float = 0.01,
        score_id_weight: float = 0.1,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or any(h % heads for h in hidden):
            raise ValueError(f"hidden={hidden}: need >= 1 layer, each divisible by heads={heads}")
        self.num_ids = num_ids
        self.dropout = dropout
        self.id_weight, self.neighbour_weight = id_weight, neighbour_weight
        self.kl_weight, self.score_id_weight = kl_weight, score_id_weight

        self.id_embedding = nn.Embedding(num_ids, emb_dim)
        widths = (in_channels + emb_dim, *hidden)
        self.convs = nn.ModuleList(
            GATConv(w_in, w_out // heads, heads=heads, dropout=dropout, edge_dim=edge_dim)
            for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.mu = nn.Linear(hidden[-1], latent_dim)
        self.logvar = nn.Linear(hidden[-1], latent_dim)
        self.feature_decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden[-1]), nn.ELU(), nn.Linear(hidden[-1], in_channels)
        )
        self.id_head = nn.Linear(latent_dim, num_ids)
        self.neighbour_head = nn.Linear(latent_dim, num_ids)

    def encode(
        self, x: Tensor, node_id: Tensor, edge_index: Tensor, edge_attr: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return per-node ``(mu, logvar)``, each ``(N, latent_dim)``."""
        h = torch.cat([x, self.id_embedding(node_id)], dim=-1)
        for conv in self.convs:
            h = F.dropout(h, p=self.dropout, training=self.training)
            h = F.elu(conv(h, edge_index, edge_attr))
        return self.mu(h), self.logvar(h).clamp(max=_LOGVAR_MAX)

    def forward(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> VGAEOutput:
        """Encode, sample (training only) and decode; ``batch`` and
        ``num_graphs`` are accepted for the common model signature."""
        mu, logvar = self.encode(x, node_id, edge_index, edge_attr)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return VGAEOutput(
            self.feature_decoder(z), self.id_head(z), self.neighbour_head(z), mu, logvar, z
        )

    def loss(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> dict[str, Tensor]:
        """Training loss parts (node means): ``mse``, ``id_ce``,
        ``neighbour_bce``, ``kl`` and their weighted sum ``total``."""
        out = self(x, node_id, edge_index, edge_attr, batch, num_graphs)
        return self.loss_parts(out, x, node_id, edge_index)

    def loss_parts(self, out: VGAEOutput, x: Tensor, node_id: Tensor, edge_index: Tensor) -> dict[str, Tensor]:
        """The loss parts of :meth:`loss` from an output already computed (so distillation can
        reuse the same forward pass for its matching terms)."""
        parts = {
            "mse": F.mse_loss(out.x_hat, x),
            "id_ce": F.cross_entropy(out.id_logits, node_id),
            "neighbour_bce": F.binary_cross_entropy_with_logits(
                out.neighbour_logits, neighbour_id_targets(node_id, edge_index, self.num_ids)
            ),
            # KL(N(mu, sigma^2) || N(0, 1)) summed over latent dims, mean over nodes.
            "kl": -0.5 * torch.mean(
                torch.sum(1 + out.logvar - out.mu.pow(2) - out.logvar.exp(), dim=-1)
            ),
        }
        parts["total"] = (
            parts["mse"]
            + self.id_weight * parts["id_ce"]
            + self.neighbour_weight * parts["neighbour_bce"]
            + self.kl_weight * parts["kl"]
        )
        return parts

    def graph_scores(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> VGAEGraphScores:
        r"""Per-graph anomaly score and the statistics the fusion state uses.

        ``score`` is the node mean of :math:`\mathrm{MSE}_v + w_{score}\,
        \mathrm{CE}_v` per graph (higher = more anomalous); the error parts are
        node means of each term; ``latent_mean`` / ``latent_std`` are the mean
        and (population) standard deviation of all entries of :math:`\mu` in
        the graph. Uses whatever mode the module is in; call ``eval()`` first
        for deterministic scores.
        """
        out = self(x, node_id, edge_index, edge_attr, batch, num_graphs)
        feature_error = (out.x_hat - x).pow(2).mean(dim=-1)
        id_error = F.cross_entropy(out.id_logits, node_id, reduction="none")
        neighbour_error = F.binary_cross_entropy_with_logits(
            out.neighbour_logits,
            neighbour_id_targets(node_id, edge_index, self.num_ids),
            reduction="none",
        ).mean(dim=-1)

        def pool(values: Tensor) -> Tensor:
            return global_mean_pool(values.unsqueeze(-1), batch, size=num_graphs).squeeze(-1)

        # Every node has latent_dim entries, so the node mean of per-node means
        # is the mean over all entries of the graph; same for the second moment.
        latent_mean = pool(out.mu.mean(dim=-1))
        latent_var = pool(out.mu.pow(2).mean(dim=-1)) - latent_mean.pow(2)
        # Rounding can push the variance just below 0, and sqrt's gradient at
        # 0 is infinite: clamp to a tiny positive floor.
        latent_var = latent_var.clamp(min=1e-12)
        return VGAEGraphScores(
            score=pool(feature_error + self.score_id_weight * id_error),
            feature_error=pool(feature_error),
            id_error=pool(id_error),
            neighbour_error=pool(neighbour_error),
            latent_mean=latent_mean,
            latent_std=latent_var.sqrt(),
        )

    def anomaly_score(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Tensor:
        """Per-graph anomaly score ``(G,)``; see :meth:`graph_scores`."""
        return self.graph_scores(x, node_id, edge_index, edge_attr, batch, num_graphs).score
