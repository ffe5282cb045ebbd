r"""Knowledge-distillation losses (pure functions of tensors).

Every function treats the teacher's tensors as constants (they are
detached), so a teacher that a caller forgot to wrap in ``torch.no_grad()``
still cannot be updated through a distillation term.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

Kernel = Literal["rbf", "linear", "poly"]


def _check_logits(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student {tuple(student.shape)} != teacher {tuple(teacher.shape)}"
        )
    # A softmax over one logit is identically 1: the KD term would be zero
    # and silently teach nothing.
    if student.size(-1) < 2:
        raise ValueError(f"{what}: need >= 2 classes in the last dimension, got {student.size(-1)}")


def hinton_kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0
) -> Tensor:
    r"""Soft-target distillation (Hinton et al., "Distilling the Knowledge in
    a Neural Network", 2015):

    .. math::
        T^2 \, \frac{1}{B} \sum_b \mathrm{KL}\big(\mathrm{softmax}(t_b / T)
        \,\|\, \mathrm{softmax}(s_b / T)\big)

    The :math:`T^2` factor keeps gradient magnitudes comparable across
    temperatures.

    Args:
        student_logits (Tensor): :math:`(B, C)` with :math:`C \ge 2`.
        teacher_logits (Tensor): :math:`(B, C)`.
        temperature (float, optional): :math:`T`. (default: ``4.0``)
    """
    _check_logits(student_logits, teacher_logits, "hinton_kd_loss")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def latent_kd_loss(
    student_mu: Tensor, teacher_mu: Tensor, projection: nn.Module | None = None
) -> Tensor:
    r"""MSE between the projected student latent and the teacher latent,
    :math:`\mathrm{MSE}(P\,\mu_s, \mu_t)`. ``projection`` (e.g. an
    ``nn.Linear(student_latent, teacher_latent)`` trained with the student)
    is required when the widths differ.

    Shapes:
        - **input:** :math:`(N, d_s)`, :math:`(N, d_t)`
        - **output:** scalar
    """
    projected = student_mu if projection is None else projection(student_mu)
    if projected.shape != teacher_mu.shape:
        raise ValueError(
            f"latent_kd_loss: student latent {tuple(projected.shape)} vs teacher "
            f"{tuple(teacher_mu.shape)}; pass a projection to the teacher's width"
        )
    return F.mse_loss(projected, teacher_mu.detach())


def reconstruction_kd_loss(student_recon: Tensor, teacher_recon: Tensor) -> Tensor:
    r""":math:`\mathrm{MSE}(\hat{x}_s, \hat{x}_t)`: the student mimics the
    teacher's reconstructions (both :math:`(N, F)`)."""
    return F.mse_loss(student_recon, teacher_recon.detach())


def vgae_kd_loss(
    student_mu: Tensor,
    teacher_mu: Tensor,
    student_recon: Tensor,
    teacher_recon: Tensor,
    projection: nn.Module | None = None,
    latent_weight: float = 0.5,
    recon_weight: float = 0.5,
) -> Tensor:
    r"""VGAE distillation term, :math:`w_z\,\mathcal{L}_{latent} +
    w_x\,\mathcal{L}_{recon}` (upstream used 0.5 / 0.5)."""
    return latent_weight * latent_kd_loss(
        student_mu, teacher_mu, projection
    ) + recon_weight * reconstruction_kd_loss(student_recon, teacher_recon)


def _edge_kernel(
    emb: Tensor, src: Tensor, dst: Tensor, kernel: str, sigma: float, degree: int
) -> Tensor:
    """Kernel similarity between the two end nodes of every edge, ``(E,)``."""
    a, b = emb[dst], emb[src]
    if kernel == "rbf":
        return torch.exp(-(a - b).pow(2).sum(dim=-1) / (2 * sigma**2))
    if kernel == "linear":
        return (a * b).sum(dim=-1)
    if kernel == "poly":
        return ((a * b).sum(dim=-1) + 1.0).pow(degree)
    raise ValueError(f"kernel={kernel!r}: expected 'rbf', 'linear' or 'poly'")


def _neighbour_log_softmax(values: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Log-softmax of edge values over the edges that share a destination."""
    # Subtract each group's max before exponentiating, so large linear or
    # polynomial similarities cannot overflow.
    group_max = scatter(values.detach(), dst, dim=0, dim_size=num_nodes, reduce="max")
    shifted = values - group_max[dst]
    log_norm = scatter(shifted.exp(), dst, dim=0, dim_size=num_nodes, reduce="sum").log()
    return shifted - log_norm[dst]


def lsp_loss(
    student_node_emb: Tensor,
    teacher_node_emb: Tensor,
    edge_index: Tensor,
    kernel: Kernel = "rbf",
    sigma: float = 1.0,
    degree: int = 2,
) -> Tensor:
    r"""Local Structure Preserving distillation (Yang et al., "Distilling
    Knowledge from Graph Convolutional Networks", CVPR 2020).

    For each node :math:`i` with in-neighbours :math:`\mathcal{N}(i)` (the
    sources of the edges into :math:`i`, i.e. the nodes a GAT layer attends
    over), the local structure is a distribution over its neighbours,

    .. math::
        LS_{ij} = \frac{\exp k(z_i, z_j)}{\sum_{l \in \mathcal{N}(i)} \exp k(z_i, z_l)},

    computed separately in the teacher's and the student's embedding space
    (so the widths may differ). The loss is
    :math:`\frac{1}{|V'|}\sum_{i \in V'} \mathrm{KL}(LS^t_i \,\|\, LS^s_i)`
    over the nodes :math:`V'` that have at least one neighbour; nodes without
    neighbours have no local structure and are skipped (no edges at all gives
    zero).

    Args:
        student_node_emb (Tensor): :math:`(N, d_s)`.
        teacher_node_emb (Tensor): :math:`(N, d_t)`.
        edge_index (Tensor): :math:`(2, E)` edges ``src -> dst``.
        kernel (str, optional): ``"rbf"``
            :math:`\exp(-\|z_i - z_j\|^2 / 2\sigma^2)`, ``"linear"``
            :math:`z_i^\top z_j` or ``"poly"`` :math:`(z_i^\top z_j + 1)^d`.
            (default: ``"rbf"``)
        sigma (float, optional): RBF bandwidth; pick it near the typical
            distance between neighbouring embeddings, or every kernel value
            saturates. (default: ``1.0``)
        degree (int, optional): Polynomial degree :math:`d`. (default: ``2``)
    """
    num_nodes = student_node_emb.size(0)
    if teacher_node_emb.size(0) != num_nodes:
        raise ValueError(
            f"lsp_loss: student has {num_nodes} nodes, teacher {teacher_node_emb.size(0)}"
        )
    src, dst = edge_index
    if src.numel() == 0:
        # Keep the graph connected to the student so callers can always backprop.
        return student_node_emb.sum() * 0.0
    log_ls_student = _neighbour_log_softmax(
        _edge_kernel(student_node_emb, src, dst, kernel, sigma, degree), dst, num_nodes
    )
    log_ls_teacher = _neighbour_log_softmax(
        _edge_kernel(teacher_node_emb.detach(), src, dst, kernel, sigma, degree), dst, num_nodes
    )
    per_edge = log_ls_teacher.exp() * (log_ls_teacher - log_ls_student)
    per_node = scatter(per_edge, dst, dim=0, dim_size=num_nodes, reduce="sum")
    has_neighbours = torch.bincount(dst, minlength=num_nodes) > 0
    return per_node[has_neighbours].mean()


def q_value_kd_loss(
    student_q: Tensor,
    teacher_q: Tensor,
    temperature: float = 1.0,
    mode: Literal["kl", "mse"] = "kl",
) -> Tensor:
    r"""Distillation of a Q-network (policy distillation, Rusu et al., 2016).

    ``"kl"``: :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(q_t/T) \,\|\,
    \mathrm{softmax}(q_s/T))` averaged over the batch, which transfers the
    teacher's ranking of actions; ``"mse"``: :math:`\mathrm{MSE}(q_s, q_t)`,
    which also transfers the values' scale.

    Shapes:
        - **input:** :math:`(B, A)` each
        - **output:** scalar
    """
    if mode == "kl":
        return hinton_kd_loss(student_q, teacher_q, temperature)
    if mode == "mse":
        return F.mse_loss(student_q, teacher_q.detach())
    raise ValueError(f"mode={mode!r}: expected 'kl' or 'mse'")
