"""Knowledge distillation inside each stage: the term is there, non-zero, reaches the student, and
the teacher stays frozen and out of the student's checkpoint.

Upstream distilled a single output logit, so its KD term was identically zero (UPSTREAM mistake 6);
these tests fail on any stage whose distillation term is zero or teaches nothing.
"""

from __future__ import annotations

import copy

import pytest
import torch

from kdgat.models import builders
from kdgat.training.teachers import load_network

from .conftest import (classifier, first_batches, fusion, graph_dims, one_batch_per_class, trainer,
                       unsupervised)

ALPHA = 0.7  # the default weight of the distillation term (UPSTREAM)


def fusion_teacher(kind: str):
    torch.manual_seed(3)
    return builders.BUILDERS[kind](**builders.SIZES[kind]["student"])


def student(stage: str, datamodule, teacher_runs, distillation: str = "standard", **settings):
    """A tiny student of ``stage`` with its (bigger) teacher attached."""
    torch.manual_seed(0)
    if stage == "gat":
        module = classifier(datamodule, distillation=distillation, **settings)
        module.attach_teacher(load_network(teacher_runs["gat"].path, graph_dims(datamodule)))
    elif stage == "vgae":
        module = unsupervised(datamodule, distillation=distillation, **settings)
        module.attach_teacher(load_network(teacher_runs["vgae"].path, graph_dims(datamodule)))
    else:
        module = fusion(datamodule, stage, distillation=distillation, **settings)
        module.attach_teacher(fusion_teacher(stage))
    return module


def grads(module) -> dict[str, torch.Tensor | None]:
    return {name: p.grad for name, p in module.named_parameters()}


def reached(module, prefix: str = "network.") -> bool:
    """Some parameter under ``prefix`` got a non-zero gradient."""
    return any(g is not None and g.abs().sum() > 0 for name, g in grads(module).items()
               if name.startswith(prefix))


STAGES = ["gat", "vgae", "dqn", "mlp"]


@pytest.mark.parametrize("stage", STAGES)
def test_standard_distillation_term_is_non_zero_and_trains_the_student(stage, datamodule, teacher_runs):
    module = student(stage, datamodule, teacher_runs)
    module.train()
    losses = module.losses(one_batch_per_class(datamodule))
    assert losses["kd_loss"].item() > 1e-6, losses
    assert "lsp_loss" not in losses
    # loss = (1 - alpha) * task + alpha * KD, both logged separately.
    expected = (1 - ALPHA) * losses["task_loss"] + ALPHA * losses["kd_loss"]
    assert torch.allclose(losses["loss"], expected)
    module.zero_grad()
    losses["kd_loss"].backward()
    assert reached(module), "the distillation term does not reach the student's network"
    assert all(p.grad is None for p in module.teacher.parameters())


def test_gat_distillation_is_hinton_kl_on_two_logits(datamodule, teacher_runs):
    """The GAT's term is T²·KL(softmax(t/T) ‖ softmax(s/T)) on the two class logits (T = 4)."""
    module = student("gat", datamodule, teacher_runs)
    module.eval()
    batch = one_batch_per_class(datamodule)
    args = (batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
    with torch.no_grad():
        s, t = module.network(*args), module.teacher(*args)
    assert s.shape[-1] == t.shape[-1] == 2
    p_t, log_p_s = (t / 4).softmax(-1), (s / 4).log_softmax(-1)
    expected = 16 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert torch.allclose(module.losses(batch)["kd_loss"], expected, atol=1e-6)


def test_vgae_distillation_matches_projected_latents_and_reconstructions(datamodule, teacher_runs):
    module = student("vgae", datamodule, teacher_runs)
    # The tiny student's latent is narrower than the teacher's: a learned projection bridges them.
    assert module.network.mu.out_features == builders.SIZES["vgae"]["tiny"]["latent_dim"]
    assert module.projection.in_features == module.network.mu.out_features
    assert module.projection.out_features == module.teacher.mu.out_features
    assert module.projection.in_features != module.projection.out_features
    module.train()
    losses = module.losses(one_batch_per_class(datamodule))
    assert losses["kd_latent_loss"] > 1e-6 and losses["kd_recon_loss"] > 1e-6
    assert torch.allclose(losses["kd_loss"], 0.5 * losses["kd_latent_loss"] + 0.5 * losses["kd_recon_loss"])
    module.zero_grad()
    losses["kd_latent_loss"].backward()
    assert reached(module, "projection.") and reached(module, "network.")
    # The projection is trained with the student: the optimizer holds it.
    optimizer = module.configure_optimizers()[0][0]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in held for p in module.projection.parameters())


def test_fusion_distillation_matches_q_values(datamodule, teacher_runs):
    module = student("dqn", datamodule, teacher_runs)
    module.eval()  # greedy, no replay: the batch's own states
    batch = one_batch_per_class(datamodule)
    state, _, _ = module.states(batch)
    with torch.no_grad():
        q_s, q_t = module.network(state), module.teacher(state)
    assert q_s.shape == q_t.shape == (batch.num_graphs, 21)
    p_t, log_p_s = (q_t / 4).softmax(-1), (q_s / 4).log_softmax(-1)
    expected = 16 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert torch.allclose(module.losses(batch)["kd_loss"], expected, atol=1e-6)


@pytest.mark.parametrize("stage", ["gat", "vgae"])
def test_topology_preserving_adds_a_non_zero_lsp_term(stage, datamodule, teacher_runs):
    module = student(stage, datamodule, teacher_runs, distillation="topology_preserving", lsp_weight=0.5)
    module.train()
    losses = module.losses(one_batch_per_class(datamodule))
    assert losses["lsp_loss"].item() > 1e-6
    mixed = (1 - ALPHA) * losses["task_loss"] + ALPHA * losses["kd_loss"]
    assert torch.allclose(losses["loss"], mixed + 0.5 * losses["lsp_loss"])
    module.zero_grad()
    losses["lsp_loss"].backward()
    assert reached(module)
    assert all(p.grad is None for p in module.teacher.parameters())


@pytest.mark.parametrize("stage", ["gat", "vgae", "dqn"])
def test_no_distillation_has_no_term_even_with_a_teacher(stage, datamodule, teacher_runs):
    module = student(stage, datamodule, teacher_runs, distillation="no")
    losses = module.losses(one_batch_per_class(datamodule))
    assert "kd_loss" not in losses and torch.equal(losses["loss"], losses["task_loss"])


@pytest.mark.parametrize("stage", STAGES)
def test_teacher_stays_frozen_through_training_and_out_of_the_checkpoint(stage, datamodule,
                                                                       teacher_runs, tmp_path):
    module = student(stage, datamodule, teacher_runs)
    teacher = module.teacher
    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(module.network.state_dict())
    fit = trainer()
    fit.fit(module, datamodule=datamodule)
    assert fit.global_step == 2
    assert "train/kd_loss" in fit.callback_metrics and "val/kd_loss" in fit.callback_metrics

    assert module.teacher is teacher
    assert not teacher.training, "the teacher must stay in eval mode (no dropout) during training"
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), f"teacher weight {key} changed"
    assert any(not torch.equal(v, student_before[k]) for k, v in module.network.state_dict().items())

    # Neither a parameter of the student nor a part of its checkpoint.
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not any(id(p) in teacher_ids for p in module.parameters())
    fit.save_checkpoint(tmp_path / "student.ckpt")
    saved = torch.load(tmp_path / "student.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    prefixes = {key.split(".")[0] for key in saved}
    expected = {"network"} | ({"projection"} if stage == "vgae" else set()) | (
        {"vgae_reference"} if stage in ("dqn", "mlp") else set())
    assert prefixes == expected


def test_frozen_modules_follow_the_module_across_devices_and_dtypes(datamodule, teacher_runs):
    """``.to()``/``.cpu()`` move the teacher and the fusion inputs too: Lightning moves the module
    back to the CPU after a GPU fit, and the evaluation that follows scores there."""
    module = student("dqn", datamodule, teacher_runs)
    frozen = [module.teacher, *module.inputs]
    module.to(torch.float64)
    assert all(p.dtype == torch.float64 for m in frozen for p in m.parameters())
    assert module.network.q_network[0].weight.dtype == torch.float64
    module.float()
    assert all(p.dtype == torch.float32 for m in frozen for p in m.parameters())
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen)


def test_a_kd_run_trains_on_real_batches_without_nan(datamodule, teacher_runs):
    """Two optimizer steps of a topology-preserving GAT student keep every loss finite."""
    module = student("gat", datamodule, teacher_runs, distillation="topology_preserving")
    optimizer = module.configure_optimizers()[0][0]
    module.train()
    for batch in first_batches(datamodule):
        losses = module.losses(batch)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
