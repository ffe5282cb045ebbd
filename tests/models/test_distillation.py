import math

import pytest
import torch
from torch import nn

from kdgat.models import (
    GATClassifier,
    hinton_kd_loss,
    latent_kd_loss,
    lsp_loss,
    q_value_kd_loss,
    reconstruction_kd_loss,
    vgae_kd_loss,
)

# A 5-node graph: node 4 has no in-neighbours, node 3 only one.
EDGE_INDEX = torch.tensor([[0, 1, 2, 3, 0, 4, 1], [1, 0, 0, 2, 2, 3, 2]])
KERNELS = ["rbf", "linear", "poly"]


def test_hinton_zero_for_equal_logits_positive_with_gradient_otherwise():
    torch.manual_seed(0)
    teacher = torch.randn(8, 2)
    assert hinton_kd_loss(teacher.clone(), teacher).abs() < 1e-6
    student = torch.randn(8, 2, requires_grad=True)
    loss = hinton_kd_loss(student, teacher, temperature=4.0)
    assert loss > 0
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_hinton_matches_the_formula():
    student, teacher, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, 0.0]]), 2.0
    p_t, p_s = (teacher / t).softmax(-1), (student / t).softmax(-1)
    expected = t**2 * (p_t * (p_t / p_s).log()).sum()
    assert torch.allclose(hinton_kd_loss(student, teacher, temperature=t), expected)


def test_hinton_refuses_a_single_logit():
    # One logit makes the softened distribution constant: the KD term would be 0.
    with pytest.raises(ValueError, match=">= 2 classes"):
        hinton_kd_loss(torch.randn(4, 1), torch.randn(4, 1))


def test_latent_and_reconstruction_matching():
    torch.manual_seed(0)
    student_mu, teacher_mu = torch.randn(6, 4), torch.randn(6, 8)
    projection = nn.Linear(4, 8)
    loss = latent_kd_loss(student_mu, teacher_mu, projection)
    loss.backward()
    assert loss > 0 and projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projection"):
        latent_kd_loss(student_mu, teacher_mu)
    assert latent_kd_loss(teacher_mu, teacher_mu) == 0

    recon = torch.randn(6, 3)
    assert reconstruction_kd_loss(recon, recon) == 0
    combined = vgae_kd_loss(student_mu, teacher_mu, recon + 1, recon, projection)
    expected = 0.5 * latent_kd_loss(student_mu, teacher_mu, projection) + 0.5 * 1.0
    assert torch.allclose(combined, expected)


def dense_lsp(student, teacher, edge_index, kernel_fn):
    """Reference LSP: a Python loop over nodes and their in-neighbours."""
    per_node = []
    for i in range(student.size(0)):
        neighbours = edge_index[0, edge_index[1] == i]
        if neighbours.numel() == 0:
            continue
        ls_s = torch.stack([kernel_fn(student[i], student[j]) for j in neighbours]).softmax(0)
        ls_t = torch.stack([kernel_fn(teacher[i], teacher[j]) for j in neighbours]).softmax(0)
        per_node.append((ls_t * (ls_t / ls_s).log()).sum())
    return torch.stack(per_node).mean()


@pytest.mark.parametrize(
    "kernel, kernel_fn",
    [
        ("rbf", lambda a, b: torch.exp(-(a - b).pow(2).sum() / (2 * 1.5**2))),
        ("linear", lambda a, b: a @ b),
        ("poly", lambda a, b: (a @ b + 1) ** 2),
    ],
)
def test_lsp_matches_a_dense_reference_with_different_widths(kernel, kernel_fn):
    torch.manual_seed(0)
    student = torch.randn(5, 3, requires_grad=True)
    teacher = torch.randn(5, 7)
    loss = lsp_loss(student, teacher, EDGE_INDEX, kernel=kernel, sigma=1.5)
    reference = dense_lsp(student.detach(), teacher, EDGE_INDEX, kernel_fn)
    assert torch.allclose(loss, reference, atol=1e-5)
    assert loss > 0
    loss.backward()
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_lsp_is_zero_for_the_same_structure_in_a_wider_space(kernel):
    torch.manual_seed(0)
    teacher = torch.randn(5, 4)
    # Rows of an orthonormal 4 x 9 map: all dot products and distances survive,
    # so the local structure is identical although the widths differ.
    rotation = torch.linalg.qr(torch.randn(9, 4)).Q.T
    student = teacher @ rotation
    assert lsp_loss(teacher, teacher, EDGE_INDEX, kernel=kernel).abs() < 1e-6
    assert lsp_loss(student, teacher, EDGE_INDEX, kernel=kernel).abs() < 1e-5


def test_lsp_without_edges_is_zero_but_backpropagates():
    student = torch.randn(3, 2, requires_grad=True)
    loss = lsp_loss(student, torch.randn(3, 5), torch.empty(2, 0, dtype=torch.long))
    assert loss == 0
    loss.backward()
    assert student.grad is not None


def test_lsp_is_stable_for_large_similarities():
    teacher, student = torch.randn(5, 4) * 100, torch.randn(5, 4) * 100
    assert torch.isfinite(lsp_loss(student, teacher, EDGE_INDEX, kernel="poly", degree=3))


def test_lsp_between_gat_student_and_teacher_node_embeddings():
    torch.manual_seed(0)
    dims = dict(num_ids=10, in_channels=3, edge_dim=2)
    teacher = GATClassifier(**dims, emb_dim=4, hidden=6, heads=2, num_layers=2).eval()
    student = GATClassifier(**dims, emb_dim=2, hidden=3, heads=1, num_layers=1)
    inputs = dict(
        x=torch.randn(5, 3),
        node_id=torch.arange(5),
        edge_index=EDGE_INDEX,
        edge_attr=torch.randn(EDGE_INDEX.size(1), 2),
        batch=torch.zeros(5, dtype=torch.long),
        num_graphs=1,
    )
    with torch.no_grad():
        teacher_emb = teacher.embed(**inputs).node_emb
    loss = lsp_loss(student.embed(**inputs).node_emb, teacher_emb, EDGE_INDEX, kernel="linear")
    loss.backward()
    assert loss > 0 and student.convs[0].lin.weight.grad.abs().sum() > 0


def test_q_value_kd_modes():
    torch.manual_seed(0)
    teacher_q = torch.randn(4, 21)
    assert q_value_kd_loss(teacher_q.clone(), teacher_q).abs() < 1e-6
    assert q_value_kd_loss(teacher_q.clone(), teacher_q, mode="mse") == 0
    student_q = torch.randn(4, 21, requires_grad=True)
    for mode in ("kl", "mse"):
        loss = q_value_kd_loss(student_q, teacher_q, temperature=2.0, mode=mode)
        assert loss > 0 and not math.isnan(loss.item())
        (grad,) = torch.autograd.grad(loss, student_q)
        assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mode"):
        q_value_kd_loss(student_q, teacher_q, mode="huber")
