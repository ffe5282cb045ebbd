"""Models of kdgat as plain ``nn.Module``s with typed constructor arguments.

Graph models take one :class:`~kdgat.data.batch.GraphBatch` spelled out as
``forward(x, node_id, edge_index, edge_attr, batch, num_graphs)`` (see
``docs/contracts.md``); fusion models take a ``(B, 15)`` fusion state.
"""

from kdgat.models.distillation import (
    hinton_kd_loss,
    latent_kd_loss,
    lsp_loss,
    q_value_kd_loss,
    reconstruction_kd_loss,
    vgae_kd_loss,
)
from kdgat.models.fusion import DQNFusion, MLPFusion, fuse
from kdgat.models.gat import GATClassifier, GATOutput
from kdgat.models.sizes import (
    SIZE_NAMES,
    SIZES,
    build_model,
    count_parameters,
    dqn_student,
    dqn_teacher,
    gat_student,
    gat_teacher,
    vgae_student,
    vgae_teacher,
)
from kdgat.models.vgae import VGAE, VGAEGraphScores, VGAEOutput, neighbour_id_targets

__all__ = [
    "DQNFusion",
    "GATClassifier",
    "GATOutput",
    "MLPFusion",
    "SIZES",
    "SIZE_NAMES",
    "VGAE",
    "VGAEGraphScores",
    "VGAEOutput",
    "build_model",
    "count_parameters",
    "dqn_student",
    "dqn_teacher",
    "fuse",
    "gat_student",
    "gat_teacher",
    "hinton_kd_loss",
    "latent_kd_loss",
    "lsp_loss",
    "neighbour_id_targets",
    "q_value_kd_loss",
    "reconstruction_kd_loss",
    "vgae_kd_loss",
    "vgae_student",
    "vgae_teacher",
]
