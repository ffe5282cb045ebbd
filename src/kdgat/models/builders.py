"""Model builders: one generic builder per model, the sizes as numbers only.

These functions are what the config store ``builds`` from (their signatures are the configs), and
they import torch only when called, so composing configs stays fast. Each mirrors its class's
constructor; ``tests/models/test_builders.py`` keeps the two in step.
"""

from __future__ import annotations

from typing import Any

SIZE_NAMES: tuple[str, ...] = ("tiny", "student", "intermediate", "teacher", "huge")

_FUSION_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden=32, num_layers=1),
    "student": dict(hidden=160, num_layers=2),
    "intermediate": dict(hidden=320, num_layers=2),
    "teacher": dict(hidden=576, num_layers=3),
    "huge": dict(hidden=1024, num_layers=4),
}

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "gat": {
        "tiny": dict(emb_dim=4, hidden=8, heads=2, num_layers=1),
        "student": dict(emb_dim=8, hidden=24, heads=4, num_layers=2),
        "intermediate": dict(emb_dim=12, hidden=32, heads=4, num_layers=3),
        "teacher": dict(emb_dim=16, hidden=48, heads=8, num_layers=3),
        "huge": dict(emb_dim=32, hidden=64, heads=8, num_layers=4),
    },
    "vgae": {
        "tiny": dict(emb_dim=2, hidden=[16, 8], latent_dim=4, heads=1),
        "student": dict(emb_dim=4, hidden=[80, 40], latent_dim=16, heads=1),
        "intermediate": dict(emb_dim=16, hidden=[240, 120], latent_dim=32, heads=2),
        "teacher": dict(emb_dim=32, hidden=[480, 240], latent_dim=48, heads=4),
        "huge": dict(emb_dim=64, hidden=[960, 480, 240], latent_dim=64, heads=8),
    },
    "dqn": _FUSION_SIZES,
    "mlp": _FUSION_SIZES,
}


def gat(num_ids: int, in_channels: int, edge_dim: int, emb_dim: int = 16, hidden: int = 48,
        heads: int = 8, num_layers: int = 3, jk_mode: str = "cat", head_hidden: int | None = None,
        dropout: float = 0.2, num_classes: int = 2):
    """A :class:`~kdgat.models.gat.GATClassifier` (GAT layers + jumping knowledge + MLP head)."""
    from kdgat.models.gat import GATClassifier

    return GATClassifier(num_ids, in_channels, edge_dim, emb_dim=emb_dim, hidden=hidden, heads=heads,
                         num_layers=num_layers, jk_mode=jk_mode, head_hidden=head_hidden,
                         dropout=dropout, num_classes=num_classes)


def vgae(num_ids: int, in_channels: int, edge_dim: int, emb_dim: int = 32,
         hidden: list[int] = (480, 240), latent_dim: int = 48, heads: int = 4, dropout: float = 0.1,
         id_weight: float = 0.1, neighbour_weight: float = 0.05, kl_weight: float = 0.01,
         score_id_weight: float = 0.1):
    """A :class:`~kdgat.models.vgae.VGAE` (GAT encoder, feature decoder, id and neighbour heads)."""
    from kdgat.models.vgae import VGAE

    return VGAE(num_ids, in_channels, edge_dim, emb_dim=emb_dim, hidden=tuple(hidden),
                latent_dim=latent_dim, heads=heads, dropout=dropout, id_weight=id_weight,
                neighbour_weight=neighbour_weight, kl_weight=kl_weight,
                score_id_weight=score_id_weight)


def dqn(state_dim: int = 15, hidden: int = 576, num_layers: int = 3, num_actions: int = 21,
        dropout: float = 0.0):
    """A :class:`~kdgat.models.fusion.DQNFusion` Q-network over the fusion state."""
    from kdgat.models.fusion import DQNFusion

    return DQNFusion(state_dim, hidden=hidden, num_layers=num_layers, num_actions=num_actions,
                     dropout=dropout)


def mlp(state_dim: int = 15, hidden: int = 576, num_layers: int = 3, dropout: float = 0.0):
    """A :class:`~kdgat.models.fusion.MLPFusion` supervised fusion baseline."""
    from kdgat.models.fusion import MLPFusion

    return MLPFusion(state_dim, hidden=hidden, num_layers=num_layers, dropout=dropout)


BUILDERS = {"gat": gat, "vgae": vgae, "dqn": dqn, "mlp": mlp}
