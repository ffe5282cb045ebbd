import pytest
import torch

from kdgat.models import (
    DQNFusion,
    MLPFusion,
    build_model,
    count_parameters,
    dqn_student,
    dqn_teacher,
    fuse,
)
from kdgat.models.sizes import SIZE_NAMES


def test_alphas_span_zero_to_one_in_steps_of_005():
    alphas = DQNFusion(hidden=8, num_layers=1).alphas()
    assert alphas.shape == (21,)
    assert torch.allclose(alphas, torch.arange(21) * 0.05)


def test_dqn_q_values_and_greedy_alpha():
    torch.manual_seed(0)
    model = DQNFusion(hidden=16, num_layers=2)
    state = torch.randn(6, 15)
    q = model(state)
    assert q.shape == (6, 21)
    alpha = model.greedy_alpha(state)
    assert torch.equal(alpha, model.alphas()[q.argmax(dim=-1)])


def test_alphas_travel_with_the_state_dict():
    model = DQNFusion(hidden=8, num_layers=1, num_actions=5)
    assert "_alphas" in model.state_dict()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_mlp_fusion_outputs_one_logit_per_window():
    torch.manual_seed(0)
    logits = MLPFusion(hidden=16, num_layers=2)(torch.randn(6, 15))
    assert logits.shape == (6,)


def test_fused_score_formula():
    vgae_score = torch.tensor([0.2, 0.9, 0.4])
    gat_prob = torch.tensor([0.8, 0.1, 0.4])
    assert torch.equal(fuse(vgae_score, gat_prob, 0.0), vgae_score)
    assert torch.equal(fuse(vgae_score, gat_prob, 1.0), gat_prob)
    per_window = torch.tensor([0.25, 0.5, 0.75])
    assert torch.allclose(fuse(vgae_score, gat_prob, per_window), torch.tensor([0.35, 0.5, 0.4]))


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_actions"):
        DQNFusion(num_actions=1)
    with pytest.raises(ValueError, match="num_layers"):
        MLPFusion(num_layers=0)
    with pytest.raises(ValueError, match="size='giant'"):
        build_model("dqn", "giant")
    with pytest.raises(ValueError, match="needs data dimensions"):
        build_model("gat", "tiny", num_ids=10)


@pytest.mark.parametrize("model", ["dqn", "mlp"])
def test_size_ordering(model):
    counts = [count_parameters(build_model(model, size)) for size in SIZE_NAMES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_dqn_teacher_and_student_match_upstream():
    # Upstream: teacher 3 x 576 with 689K parameters, student 2 x 160 with 32K.
    assert 650_000 <= count_parameters(dqn_teacher()) <= 720_000
    assert 28_000 <= count_parameters(dqn_student()) <= 36_000
