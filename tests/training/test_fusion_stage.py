"""The fusion stage: its state, the fused score (1 - α)·v + α·p, and one rule for training and
evaluation.

Upstream trained the DQN with one decision rule (α > 0.5) and evaluated it with another (the fused
score; UPSTREAM mistake 7). Here the reward the agent learns from is computed from exactly the
fused score that :meth:`FusionModule.score` returns, which is what evaluation thresholds.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kdgat.models.fusion import fuse
from kdgat.training.fusion import STATE_FEATURES
from kdgat.training.stage import build_module

from .conftest import (compose_config, first_batches, fusion, grid_point, one_batch_per_class,
                       trainer)


def test_state_has_the_fifteen_named_features_and_probability_scaled_inputs(datamodule):
    module = fusion(datamodule, "dqn")
    batch = one_batch_per_class(datamodule)
    state, v, p = module.states(batch)
    assert len(STATE_FEATURES) == 15 and state.shape == (batch.num_graphs, 15)
    assert torch.isfinite(state).all()
    assert ((0 <= v) & (v <= 1)).all() and ((0 <= p) & (p <= 1)).all()
    assert torch.equal(state[:, STATE_FEATURES.index("vgae_cdf")], v)
    assert torch.equal(state[:, STATE_FEATURES.index("gat_prob")], p)
    # v is the VGAE score's rank among the benign training windows' scores (its empirical CDF).
    vgae, gat = module.inputs
    raw = vgae.anomaly_score(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                             batch.num_graphs)
    reference = module.vgae_reference.numpy()
    assert np.all(np.diff(reference) >= 0)
    expected = np.searchsorted(reference, raw.numpy()) / len(reference)
    assert np.allclose(v.numpy(), expected)
    probs = gat(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                batch.num_graphs).softmax(-1)[:, 1]
    assert torch.allclose(p, probs)


def test_fused_score_is_the_greedy_alpha_mix_of_vgae_and_gat(datamodule):
    torch.manual_seed(0)
    module = fusion(datamodule, "dqn").eval()
    batch = one_batch_per_class(datamodule)
    state, v, p = module.states(batch)
    alpha = module.network.alphas()[module.network(state).argmax(-1)]
    assert torch.allclose(module.score(batch), (1 - alpha) * v + alpha * p)
    # Actions are α ∈ {0, 0.05, ..., 1}.
    assert torch.allclose(module.network.alphas(), torch.arange(21) * 0.05)


def test_validation_reward_is_computed_from_the_evaluated_score(datamodule):
    """The reward the DQN is scored on in validation is 1 - |label - score|, with ``score`` the very
    value evaluation thresholds."""
    torch.manual_seed(0)
    module = fusion(datamodule, "dqn").eval()
    batch = one_batch_per_class(datamodule)
    score = module.score(batch)
    losses = module.losses(batch)
    assert torch.allclose(losses["reward"], (1 - (batch.y.float() - score).abs()).mean())


def test_training_rewards_come_from_the_same_fused_score(datamodule):
    """With exploration off, the transitions the agent stores while training carry the reward of
    the score evaluation would give those windows."""
    torch.manual_seed(0)
    module = fusion(datamodule, "dqn", fusion_settings=dict(epsilon_start=0.0, epsilon_end=0.0))
    batch = one_batch_per_class(datamodule)
    module.eval()
    score = module.score(batch)
    module.train()  # the inputs stay frozen in eval mode; the DQN has no dropout
    module.losses(batch)
    (states, actions, rewards), = module._replay
    assert torch.allclose(rewards, 1 - (batch.y.float() - score).abs())
    expected_alpha = module.network.alphas()[actions]
    state, v, p = module.states(batch)
    assert torch.equal(states, state)
    assert torch.allclose(fuse(v, p, expected_alpha), score)


def test_exploration_decays_linearly_and_the_replay_stays_bounded(datamodule):
    module = fusion(datamodule, "dqn", fusion_settings=dict(epsilon_start=0.5, epsilon_end=0.1,
                                                            epsilon_decay_epochs=4, replay_size=40,
                                                            replay_batch=8))
    assert module._epsilon() == pytest.approx(0.5)
    module.train()
    batches = first_batches(datamodule, 3)
    for batch in batches:
        losses = module.losses(batch)
        assert torch.isfinite(losses["loss"])
    # Oldest transitions are dropped once more than replay_size are held (32 per batch).
    assert sum(len(s) for s, _, _ in module._replay) == module._replay_size < 40 + 32


def test_mlp_baseline_scores_are_probabilities(datamodule):
    torch.manual_seed(0)
    module = fusion(datamodule, "mlp").eval()
    batch = one_batch_per_class(datamodule)
    score = module.score(batch)
    assert score.shape == (batch.num_graphs,)
    assert ((0 <= score) & (score <= 1)).all()
    state, _, _ = module.states(batch)
    assert torch.allclose(score, torch.sigmoid(module.network(state)))
    losses = module.losses(batch)
    assert set(losses) == {"task_loss", "loss"}


@pytest.mark.parametrize("kind", ["dqn", "mlp"])
def test_fusion_trains_without_touching_its_inputs_and_saves_its_reference(kind, datamodule, tmp_path):
    torch.manual_seed(0)
    module = fusion(datamodule, kind)
    vgae, gat = module.inputs
    inputs_before = [copy.deepcopy(m.state_dict()) for m in (vgae, gat)]
    network_before = copy.deepcopy(module.network.state_dict())
    fit = trainer()
    fit.fit(module, datamodule=datamodule)
    assert torch.isfinite(fit.callback_metrics["val/loss"])
    for m, before in zip((vgae, gat), inputs_before):
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert any(not torch.equal(v, network_before[k]) for k, v in module.network.state_dict().items())
    # The reference travels with the checkpoint, so a reloaded agent maps v exactly as trained; the
    # inputs themselves are not saved (they are their own runs).
    fit.save_checkpoint(tmp_path / "fusion.ckpt")
    saved = torch.load(tmp_path / "fusion.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(saved["vgae_reference"], module.vgae_reference)
    assert {k.split(".")[0] for k in saved} == {"network", "vgae_reference"}
    reloaded = fusion(datamodule, kind)
    reloaded.load_state_dict(saved)
    batch = one_batch_per_class(datamodule)
    assert torch.allclose(reloaded.eval().score(batch), module.eval().score(batch))


def test_build_module_wires_the_fusion_inputs_from_their_runs(teacher_runs, datamodule):
    cfg = compose_config("model=dqn", "size=tiny")
    needs = {"vgae": teacher_runs["vgae"].path, "gat": teacher_runs["gat"].path}
    module = build_module(cfg, grid_point(cfg), datamodule, needs)
    vgae, gat = module.inputs
    assert module.kind == "dqn" and module.teacher is None
    for loaded, run in ((vgae, teacher_runs["vgae"]), (gat, teacher_runs["gat"])):
        assert not loaded.training
        for key, value in run.module.network.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    # The reference is the VGAE's scores of every benign training window, sorted.
    store = datamodule.store
    train = store.graphs_of("train")
    assert len(module.vgae_reference) == int((store.y[train] == 0).sum())
    batch = store.assemble(train[store.y[train] == 0][:5])
    raw = vgae.anomaly_score(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                             batch.num_graphs)
    assert all(torch.isclose(module.vgae_reference, r).any() for r in raw)


def test_fusion_kind_is_validated(datamodule):
    with pytest.raises(ValueError, match="fusion kind='gat'"):
        fusion(datamodule, "gat")
