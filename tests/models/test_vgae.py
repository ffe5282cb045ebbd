import pytest
import torch
import torch.nn.functional as F

from kdgat.models import VGAE, build_model, count_parameters, vgae_student, vgae_teacher
from kdgat.models.sizes import SIZE_NAMES
from kdgat.models.vgae import neighbour_id_targets

from toy_graphs import EDGE_DIM, IN_CHANNELS, NUM_IDS, toy_batch  # noqa: F401


def small_vgae(**kwargs):
    torch.manual_seed(0)
    defaults = dict(emb_dim=3, hidden=(8, 6), latent_dim=4, heads=2)
    return VGAE(NUM_IDS, IN_CHANNELS, EDGE_DIM, **(defaults | kwargs))


def test_output_shapes_and_sampling_only_in_training():
    data = toy_batch()
    model = small_vgae()
    out = model(**data)
    assert out.x_hat.shape == (12, IN_CHANNELS)
    assert out.id_logits.shape == out.neighbour_logits.shape == (12, NUM_IDS)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (12, 4)
    assert not torch.allclose(out.z, out.mu)
    model.eval()
    first, second = model(**data), model(**data)
    assert torch.equal(first.z, first.mu) and torch.equal(first.x_hat, second.x_hat)


def test_loss_parts_are_positive_weighted_and_reach_every_parameter():
    data = toy_batch()
    model = small_vgae()
    torch.manual_seed(1)
    parts = model.loss(**data)
    assert set(parts) == {"mse", "id_ce", "neighbour_bce", "kl", "total"}
    for name, value in parts.items():
        assert value.ndim == 0 and torch.isfinite(value) and value > 0, name
    expected = (
        parts["mse"] + 0.1 * parts["id_ce"] + 0.05 * parts["neighbour_bce"] + 0.01 * parts["kl"]
    )
    assert torch.allclose(parts["total"], expected)
    parts["total"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_neighbour_targets_cover_both_edge_directions():
    node_id = torch.tensor([7, 2, 9])
    edge_index = torch.tensor([[0, 1], [1, 1]])  # 0 -> 1 and a self-loop on 1
    target = neighbour_id_targets(node_id, edge_index, num_ids=10)
    assert target[0].nonzero().flatten().tolist() == [2]
    assert target[1].nonzero().flatten().tolist() == [2, 7]
    assert target[2].sum() == 0  # isolated node: no neighbours


def test_graph_scores_pool_per_graph():
    data = toy_batch()
    model = small_vgae(score_id_weight=0.3).eval()
    scores = model.graph_scores(**data)
    assert all(value.shape == (2,) for value in scores)
    assert torch.allclose(scores.score, scores.feature_error + 0.3 * scores.id_error)
    assert torch.equal(model.anomaly_score(**data), scores.score)

    out = model(**data)
    first = data["batch"] == 0
    feature_error = F.mse_loss(out.x_hat[first], data["x"][first])
    assert torch.allclose(scores.feature_error[0], feature_error)
    mu = out.mu[first]
    assert torch.allclose(scores.latent_mean[0], mu.mean(), atol=1e-6)
    assert torch.allclose(scores.latent_std[0], mu.std(unbiased=False), atol=1e-5)


def test_graph_score_is_invariant_to_node_relabelling():
    data = toy_batch()
    model = small_vgae().eval()
    perm = torch.cat([torch.tensor([3, 0, 4, 1, 2]), torch.tensor([6, 2, 0, 5, 1, 4, 3]) + 5])
    new_of_old = torch.empty_like(perm)
    new_of_old[perm] = torch.arange(12)
    permuted = dict(
        data,
        x=data["x"][perm],
        node_id=data["node_id"][perm],
        batch=data["batch"][perm],
        edge_index=new_of_old[data["edge_index"]],
    )
    original, relabelled = model.graph_scores(**data), model.graph_scores(**permuted)
    for a, b in zip(original, relabelled):
        assert torch.allclose(a, b, atol=1e-5)


def test_hidden_must_split_over_heads():
    with pytest.raises(ValueError, match="divisible by heads"):
        small_vgae(hidden=(9, 6), heads=2)


def test_size_ordering_and_upstream_sizes():
    dims = dict(num_ids=72, in_channels=22, edge_dim=2)
    counts = [count_parameters(build_model("vgae", size, **dims)) for size in SIZE_NAMES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    # Upstream: teacher 186K, student 9K (hcrl_sa vocabulary).
    assert 150_000 <= count_parameters(vgae_teacher(**dims)) <= 250_000
    assert count_parameters(vgae_student(**dims)) <= 15_000
