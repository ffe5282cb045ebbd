"""Models of kdgat as plain ``nn.Module``s with typed constructor arguments.

Graph models take one :class:`~kdgat.data.batch.GraphBatch` spelled out as
``forward(x, node_id, edge_index, edge_attr, batch, num_graphs)`` (see
``docs/contracts.md``); fusion models take a ``(B, 15)`` fusion state.
"""

# Exports resolve on first use (PEP 562): importing a light submodule such as
# ``kdgat.models.builders`` must not import torch and PyG.
_EXPORTS = {
    "hinton_kd_loss": "kdgat.models.distillation",
    "latent_kd_loss": "kdgat.models.distillation",
    "lsp_loss": "kdgat.models.distillation",
    "q_value_kd_loss": "kdgat.models.distillation",
    "reconstruction_kd_loss": "kdgat.models.distillation",
    "vgae_kd_loss": "kdgat.models.distillation",
    "DQNFusion": "kdgat.models.fusion",
    "MLPFusion": "kdgat.models.fusion",
    "fuse": "kdgat.models.fusion",
    "GATClassifier": "kdgat.models.gat",
    "GATOutput": "kdgat.models.gat",
    "SIZE_NAMES": "kdgat.models.sizes",
    "SIZES": "kdgat.models.sizes",
    "build_model": "kdgat.models.sizes",
    "count_parameters": "kdgat.models.sizes",
    "dqn_student": "kdgat.models.sizes",
    "dqn_teacher": "kdgat.models.sizes",
    "gat_student": "kdgat.models.sizes",
    "gat_teacher": "kdgat.models.sizes",
    "vgae_student": "kdgat.models.sizes",
    "vgae_teacher": "kdgat.models.sizes",
    "VGAE": "kdgat.models.vgae",
    "VGAEGraphScores": "kdgat.models.vgae",
    "VGAEOutput": "kdgat.models.vgae",
    "neighbour_id_targets": "kdgat.models.vgae",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kdgat.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
