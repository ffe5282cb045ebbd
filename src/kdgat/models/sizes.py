"""Named model sizes: builders that only fix numbers.

``SIZES[model][size]`` holds the size-specific constructor arguments;
everything else keeps the class defaults. Teacher and student match the
models trained upstream (KD-GAT, hcrl_sa vocabulary); ``tiny`` is for tests
and smoke runs, ``intermediate`` sits between student and teacher, ``huge``
above the teacher. The fusion baseline (``mlp``) uses the DQN's widths so the
two fusion methods compare at equal capacity.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from kdgat.models.fusion import DQNFusion, MLPFusion
from kdgat.models.gat import GATClassifier
from kdgat.models.vgae import VGAE

ModelName = Literal["gat", "vgae", "dqn", "mlp"]
SizeName = Literal["tiny", "student", "intermediate", "teacher", "huge"]
# The numbers live in the import-light builders module, which the config store reads.
from kdgat.models.builders import SIZE_NAMES, SIZES  # noqa: E402


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _size_kwargs(model: str, size: str) -> dict[str, Any]:
    if model not in SIZES:
        raise ValueError(f"model={model!r}: expected one of {tuple(SIZES)}")
    if size not in SIZES[model]:
        raise ValueError(f"size={size!r} for model {model!r}: expected one of {SIZE_NAMES}")
    return dict(SIZES[model][size])


def build_model(
    model: ModelName,
    size: SizeName,
    *,
    num_ids: int | None = None,
    in_channels: int | None = None,
    edge_dim: int | None = None,
    state_dim: int = 15,
    **overrides: Any,
) -> nn.Module:
    """Build ``model`` at a named ``size``; ``overrides`` replace any
    constructor argument (e.g. ``dropout``, ``jk_mode``).

    Graph models (``gat``, ``vgae``) need the data dimensions ``num_ids``,
    ``in_channels`` and ``edge_dim``; fusion models (``dqn``, ``mlp``) need
    only ``state_dim``.
    """
    kwargs = _size_kwargs(model, size) | overrides
    if "hidden" in kwargs and isinstance(kwargs["hidden"], list):
        kwargs["hidden"] = tuple(kwargs["hidden"])
    if model in ("gat", "vgae"):
        dims = dict(num_ids=num_ids, in_channels=in_channels, edge_dim=edge_dim)
        missing = [name for name, value in dims.items() if value is None]
        if missing:
            raise ValueError(f"build_model({model!r}, ...) needs data dimensions {missing}")
        cls = GATClassifier if model == "gat" else VGAE
        return cls(**dims, **kwargs)
    cls = DQNFusion if model == "dqn" else MLPFusion
    return cls(state_dim=state_dim, **kwargs)


def gat_teacher(num_ids: int, in_channels: int, edge_dim: int) -> GATClassifier:
    """GAT teacher: 3 layers x 48 channels x 8 heads, id embedding 16."""
    return GATClassifier(num_ids, in_channels, edge_dim, **SIZES["gat"]["teacher"])


def gat_student(num_ids: int, in_channels: int, edge_dim: int) -> GATClassifier:
    """GAT student: 2 layers x 24 channels x 4 heads, id embedding 8."""
    return GATClassifier(num_ids, in_channels, edge_dim, **SIZES["gat"]["student"])


def vgae_teacher(num_ids: int, in_channels: int, edge_dim: int) -> VGAE:
    """VGAE teacher: hidden (480, 240), latent 48, 4 heads, id embedding 32."""
    return VGAE(num_ids, in_channels, edge_dim, **SIZES["vgae"]["teacher"])


def vgae_student(num_ids: int, in_channels: int, edge_dim: int) -> VGAE:
    """VGAE student: hidden (80, 40), latent 16, 1 head, id embedding 4."""
    return VGAE(num_ids, in_channels, edge_dim, **SIZES["vgae"]["student"])


def dqn_teacher(state_dim: int = 15) -> DQNFusion:
    """DQN fusion teacher: 3 hidden layers x 576."""
    return DQNFusion(state_dim, **SIZES["dqn"]["teacher"])


def dqn_student(state_dim: int = 15) -> DQNFusion:
    """DQN fusion student: 2 hidden layers x 160."""
    return DQNFusion(state_dim, **SIZES["dqn"]["student"])
