"""Typed settings of the training stages (import-light: the config store builds from these).

Each dataclass validates its values on construction, with messages naming the key and the valid
values, so a bad override fails before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


def _one_of(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}")


def _positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name}={value!r} must be positive")


@dataclass
class OptimizerSettings:
    """Optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9

    def __post_init__(self):
        _one_of("optimizer.name", self.name, ("adam", "adamw", "sgd"))
        _positive("optimizer.lr", self.lr)


@dataclass
class SchedulerSettings:
    """Learning-rate schedule: ``none``, ``cosine``, ``step`` or ``plateau``, each with optional
    linear warm-up over ``warmup_epochs``. ``plateau`` watches the monitored validation metric."""

    name: str = "none"
    warmup_epochs: int = 0
    step_size: int = 10
    gamma: float = 0.5
    patience: int = 5
    min_lr: float = 1e-6

    def __post_init__(self):
        _one_of("scheduler.name", self.name, ("none", "cosine", "step", "plateau"))
        if self.warmup_epochs < 0:
            raise ValueError(f"scheduler.warmup_epochs={self.warmup_epochs} must be >= 0")


@dataclass
class DistillationSettings:
    """Knowledge distillation from a frozen teacher (UPSTREAM: T=4, alpha=0.7 on the KD term).

    Args:
        kind: ``no``, ``standard`` (Hinton KL on logits; latent + reconstruction matching for the
            VGAE; Q-value matching for fusion) or ``topology_preserving`` (standard plus Local
            Structure Preserving distillation on node embeddings, Yang et al., CVPR 2020).
        alpha: weight of the distillation term; the task loss gets ``1 - alpha``.
        temperature: softening temperature of the Hinton and Q-value terms.
        lsp_weight: weight of the structure-preserving term (``topology_preserving`` only).
        lsp_kernel: ``rbf``, ``linear`` or ``poly`` similarity of the LSP term.
        lsp_sigma: RBF width of the LSP kernel.
        teacher_run: the teacher's run directory; ``None`` uses the newest completed run of the
            teacher's grid point (the resolved path is saved in the run's config).
    """

    kind: str = "no"
    alpha: float = 0.7
    temperature: float = 4.0
    lsp_weight: float = 1.0
    lsp_kernel: str = "rbf"
    lsp_sigma: float = 1.0
    teacher_run: str | None = None

    def __post_init__(self):
        _one_of("distillation.kind", self.kind, ("no", "standard", "topology_preserving"))
        _one_of("distillation.lsp_kernel", self.lsp_kernel, ("rbf", "linear", "poly"))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distillation.alpha={self.alpha} must be in [0, 1]")
        _positive("distillation.temperature", self.temperature)

    @property
    def enabled(self) -> bool:
        return self.kind != "no"


@dataclass
class CurriculumSettings:
    """Curriculum for the GAT: benign windows ordered by a teacher VGAE's anomaly score, shown
    easy → hard. At epoch 0 the benign windows number ``start_ratio`` × the attack windows (1.0 is
    balanced); by ``ramp_epochs`` all benign windows are in (the natural ratio). Attacks are
    always all included.

    Args:
        enabled: use the curriculum (set by ``mode=curriculum``).
        start_ratio: benign : attack ratio at the first epoch.
        ramp_epochs: epochs to reach the natural ratio.
        scorer_run: the teacher VGAE's run directory; ``None`` uses the newest completed one.
    """

    enabled: bool = False
    start_ratio: float = 1.0
    ramp_epochs: int = 10
    scorer_run: str | None = None

    def __post_init__(self):
        _positive("curriculum.start_ratio", self.start_ratio)
        if self.ramp_epochs < 1:
            raise ValueError(f"curriculum.ramp_epochs={self.ramp_epochs} must be >= 1")


@dataclass
class FusionSettings:
    """Inputs and training of the fusion agent.

    Args:
        vgae_run: run directory of the VGAE to fuse (``None``: newest completed run).
        gat_run: run directory of the GAT to fuse (``None``: newest completed run).
        epsilon_start: DQN exploration rate at the start, decaying linearly to ``epsilon_end``.
        epsilon_end: final exploration rate.
        epsilon_decay_epochs: epochs of the linear decay.
        replay_size: transitions kept in the replay buffer.
        replay_batch: transitions per DQN update.
    """

    vgae_run: str | None = None
    gat_run: str | None = None
    epsilon_start: float = 0.5
    epsilon_end: float = 0.02
    epsilon_decay_epochs: int = 10
    replay_size: int = 50_000
    replay_batch: int = 256

    def __post_init__(self):
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"fusion.{name}={getattr(self, name)} must be in [0, 1]")
        _positive("fusion.replay_size", self.replay_size)
        _positive("fusion.replay_batch", self.replay_batch)


@dataclass
class TrainerSettings:
    """The Lightning ``Trainer`` arguments kdgat sets (any other can be added with ``+trainer.x=``).

    CPU runs are deterministic by default; ``gradient_clip_val`` follows upstream (1.0).
    """

    max_epochs: int = 50
    min_epochs: int = 1
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str = "32-true"
    gradient_clip_val: Optional[float] = 1.0
    deterministic: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = False
    enable_model_summary: bool = False

    def __post_init__(self):
        if self.max_epochs < 1:
            raise ValueError(f"trainer.max_epochs={self.max_epochs} must be >= 1")


@dataclass
class EarlyStoppingSettings:
    """Stop when the monitored validation metric has not improved for ``patience`` epochs."""

    enabled: bool = True
    patience: int = 10
    min_delta: float = 0.0
