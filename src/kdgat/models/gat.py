"""Graph attention classifier: one window graph in, attack / benign logits out."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, JumpingKnowledge, global_mean_pool

JKMode = Literal["cat", "max", "lstm"]
JK_MODES: tuple[str, ...] = ("cat", "max", "lstm")


class GATOutput(NamedTuple):
    """Everything :meth:`GATClassifier.embed` computes in one pass.

    Attributes:
        logits: ``(G, num_classes)`` class logits per graph.
        node_emb: ``(N, emb_width)`` jumping-knowledge output per node (what
            topology-preserving distillation compares).
        graph_emb: ``(G, emb_width)`` mean-pooled ``node_emb``.
        attention: one ``(edge_index, alpha)`` pair per GAT layer, with
            ``edge_index`` of shape ``(2, E')`` (self-loops added) and ``alpha``
            of shape ``(E', heads)``; ``None`` unless requested.
    """

    logits: Tensor
    node_emb: Tensor
    graph_emb: Tensor
    attention: list[tuple[Tensor, Tensor]] | None


class GATClassifier(nn.Module):
    r"""Graph-level intrusion classifier built from graph attention layers.

    Each node (one CAN id inside a window) is the concatenation of a learned
    embedding of its id with its continuous features. :math:`L` GAT layers
    (Veličković et al., "Graph Attention Networks", ICLR 2018) with
    concatenated heads and edge features propagate information along the
    frame-order edges; jumping knowledge (Xu et al., "Representation Learning
    on Graphs with Jumping Knowledge Networks", ICML 2018) combines every
    layer's output per node; a mean pool over the window's nodes and an MLP
    head give the class logits.

    Args:
        num_ids (int): Size of the CAN-id vocabulary (known ids plus OOV
            buckets); ``node_id`` must lie in ``[0, num_ids)``.
        in_channels (int): Number of continuous node features ``F``.
        edge_dim (int): Number of edge features ``D``.
        emb_dim (int, optional): Width of the CAN-id embedding; ``0``: none, the
            ID-agnostic GAT (a node is its continuous features only, so a vehicle's
            unfamiliar ids look like any other id). (default: ``16``)
        hidden (int, optional): Output channels *per head* of every GAT layer.
            (default: ``48``)
        heads (int, optional): Attention heads per layer; heads are
            concatenated, so a layer outputs ``hidden * heads`` channels.
            (default: ``8``)
        num_layers (int, optional): Number of GAT layers. (default: ``3``)
        jk_mode (str, optional): Jumping-knowledge aggregation, ``"cat"``,
            ``"max"`` or ``"lstm"``. (default: ``"cat"``)
        head_hidden (int, optional): Width of the MLP head's hidden layer;
            ``None`` uses ``hidden``. (default: ``None``)
        dropout (float, optional): Dropout on features between layers and on
            attention coefficients. (default: ``0.2``)
        num_classes (int, optional): Number of output logits. (default: ``2``)

    Shapes:
        - **input:** node features :math:`(N, F)`, node ids :math:`(N,)`,
          edge indices :math:`(2, E)`, edge features :math:`(E, D)`,
          batch vector :math:`(N,)`, ``num_graphs`` :math:`G`
        - **output:** logits :math:`(G, \text{num\_classes})`
    """

    def __init__(
        self,
        num_ids: int,
        in_channels: int,
        edge_dim: int,
        emb_dim: int = 16,
        hidden: int = 48,
        heads: int = 8,
        num_layers: int = 3,
        jk_mode: JKMode = "cat",
        head_hidden: int | None = None,
        dropout: float = 0.2,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        if jk_mode not in JK_MODES:
            raise ValueError(f"jk_mode={jk_mode!r}: expected one of {JK_MODES}")
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers}: need at least one GAT layer")
        if emb_dim < 0:
            raise ValueError(f"emb_dim={emb_dim}: use 0 (no id embedding) or a positive width")
        self.dropout = dropout
        # A zero-width nn.Embedding fails on CUDA (an illegal memory access), so 0 builds none.
        self.id_embedding = nn.Embedding(num_ids, emb_dim) if emb_dim > 0 else None

        width = hidden * heads
        self.convs = nn.ModuleList()
        for layer in range(num_layers):
            self.convs.append(
                GATConv(
                    in_channels + emb_dim if layer == 0 else width,
                    hidden,
                    heads=heads,
                    concat=True,
                    dropout=dropout,
                    edge_dim=edge_dim,
                )
            )
        # "max" and "lstm" combine layers element-wise, so they keep the
        # per-layer width; "cat" stacks all layers side by side.
        self.jk = JumpingKnowledge(jk_mode, channels=width, num_layers=num_layers)
        self.emb_width = width * num_layers if jk_mode == "cat" else width

        head_hidden = hidden if head_hidden is None else head_hidden
        self.head = nn.Sequential(
            nn.Linear(self.emb_width, head_hidden),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, num_classes),
        )

    def embed(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
        return_attention: bool = False,
    ) -> GATOutput:
        """Run the network once and return logits, node and graph embeddings
        (and per-layer attention coefficients when ``return_attention``)."""
        h = x if self.id_embedding is None else torch.cat([x, self.id_embedding(node_id)], dim=-1)
        layer_outputs: list[Tensor] = []
        attention: list[tuple[Tensor, Tensor]] | None = [] if return_attention else None
        for conv in self.convs:
            h = F.dropout(h, p=self.dropout, training=self.training)
            if attention is not None:
                h, (att_index, alpha) = conv(
                    h, edge_index, edge_attr, return_attention_weights=True
                )
                attention.append((att_index, alpha))
            else:
                h = conv(h, edge_index, edge_attr)
            h = F.elu(h)
            layer_outputs.append(h)
        node_emb = self.jk(layer_outputs)
        # size=num_graphs keeps G fixed even if the last graphs of a batch
        # happen to have no nodes.
        graph_emb = global_mean_pool(node_emb, batch, size=num_graphs)
        return GATOutput(self.head(graph_emb), node_emb, graph_emb, attention)

    def forward(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Tensor:
        """Return class logits of shape ``(G, num_classes)``."""
        return self.embed(x, node_id, edge_index, edge_attr, batch, num_graphs).logits

    @torch.no_grad()
    def attack_probability(
        self,
        x: Tensor,
        node_id: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Tensor:
        """Softmax probability of class 1 (attack) per graph, shape ``(G,)``."""
        logits = self(x, node_id, edge_index, edge_attr, batch, num_graphs)
        return logits.softmax(dim=-1)[:, 1]
