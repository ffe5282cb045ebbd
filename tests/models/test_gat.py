import pytest
import torch
from torch_geometric.utils import scatter

from kdgat.models import GATClassifier, build_model, count_parameters, gat_student, gat_teacher
from kdgat.models.sizes import SIZE_NAMES

from toy_graphs import EDGE_DIM, IN_CHANNELS, NUM_IDS, toy_batch  # noqa: F401


def permute_within_graphs(data, seed=1):
    """Relabel nodes inside each graph; returns the permuted batch."""
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for g in range(data["num_graphs"]):
        nodes = (data["batch"] == g).nonzero().squeeze(1)
        blocks.append(nodes[torch.randperm(nodes.numel(), generator=gen)])
    perm = torch.cat(blocks)  # new position -> old node
    assert not torch.equal(perm, torch.arange(perm.numel())), "pick a seed that permutes"
    new_of_old = torch.empty_like(perm)
    new_of_old[perm] = torch.arange(perm.numel())
    return dict(
        data,
        x=data["x"][perm],
        node_id=data["node_id"][perm],
        batch=data["batch"][perm],
        edge_index=new_of_old[data["edge_index"]],
    )


def small_gat(**kwargs):
    torch.manual_seed(0)
    defaults = dict(emb_dim=4, hidden=6, heads=3, num_layers=2)
    return GATClassifier(NUM_IDS, IN_CHANNELS, EDGE_DIM, **(defaults | kwargs))


@pytest.mark.parametrize("jk_mode", ["cat", "max", "lstm"])
def test_shapes_and_backward_for_every_jk_mode(jk_mode):
    data = toy_batch()
    model = small_gat(jk_mode=jk_mode)
    out = model.embed(**data)
    width = 6 * 3 * (2 if jk_mode == "cat" else 1)
    assert model.emb_width == width
    assert out.logits.shape == (2, 2)
    assert out.node_emb.shape == (12, width)
    assert out.graph_emb.shape == (2, width)
    assert out.attention is None
    out.logits.sum().backward()
    assert model.id_embedding.weight.grad.abs().sum() > 0
    model.eval()
    assert torch.allclose(model(**data), model.embed(**data).logits)


def test_attention_is_a_distribution_over_incoming_edges():
    data = toy_batch()
    model = small_gat().eval()
    attention = model.embed(**data, return_attention=True).attention
    assert len(attention) == 2
    for edge_index, alpha in attention:
        assert alpha.shape == (edge_index.size(1), 3)
        assert alpha.min() >= 0 and alpha.max() <= 1
        per_destination = scatter(alpha, edge_index[1], dim=0, dim_size=12, reduce="sum")
        # GATConv adds self-loops, so every node (even one without edges) has weight 1.
        assert torch.allclose(per_destination, torch.ones(12, 3), atol=1e-5)


def test_pooled_output_is_invariant_to_node_relabelling():
    data = toy_batch()
    model = small_gat().eval()
    original = model.embed(**data)
    permuted = model.embed(**permute_within_graphs(data))
    assert torch.allclose(original.logits, permuted.logits, atol=1e-5)
    assert torch.allclose(original.graph_emb, permuted.graph_emb, atol=1e-5)


def test_batched_graphs_match_graphs_run_alone():
    data = toy_batch()
    model = small_gat(jk_mode="max").eval()
    together = model(**data)
    for g, (lo, hi) in enumerate([(0, 5), (5, 12)]):
        keep = (data["edge_index"][0] >= lo) & (data["edge_index"][0] < hi)
        alone = model(
            x=data["x"][lo:hi],
            node_id=data["node_id"][lo:hi],
            edge_index=data["edge_index"][:, keep] - lo,
            edge_attr=data["edge_attr"][keep],
            batch=torch.zeros(hi - lo, dtype=torch.long),
            num_graphs=1,
        )
        assert torch.allclose(together[g], alone[0], atol=1e-5)


def test_graph_without_edges_and_empty_trailing_graph():
    data = toy_batch(sizes=(4,), num_edges=(0,))
    data["num_graphs"] = 2  # a graph with no nodes still gets a row
    logits = small_gat().eval()(**data)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_invalid_arguments_name_the_flag():
    with pytest.raises(ValueError, match="jk_mode"):
        small_gat(jk_mode="sum")
    with pytest.raises(ValueError, match="num_layers"):
        small_gat(num_layers=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU on this machine"))])
def test_emb_dim_0_is_the_id_agnostic_gat(device):
    """network.emb_dim=0: no id embedding, so a window's logits do not depend on which ids it has."""
    data = {k: v.to(device) if torch.is_tensor(v) else v for k, v in toy_batch().items()}
    network = small_gat(emb_dim=0).to(device)
    assert network.id_embedding is None
    assert count_parameters(network) < count_parameters(small_gat())
    network.eval()
    unseen = dict(data, node_id=(data["node_id"] + 7) % NUM_IDS)
    assert torch.allclose(network(**data), network(**unseen))
    network.train()
    network(**data).sum().backward()  # a zero-width embedding fails here on CUDA
    assert all(p.grad is not None for p in network.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="emb_dim=-1: use 0"):
        small_gat(emb_dim=-1)


def test_size_ordering_and_teacher_student_ratio():
    dims = dict(num_ids=72, in_channels=22, edge_dim=2)
    counts = [count_parameters(build_model("gat", size, **dims)) for size in SIZE_NAMES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    teacher, student = count_parameters(gat_teacher(**dims)), count_parameters(gat_student(**dims))
    assert teacher == counts[SIZE_NAMES.index("teacher")]
    assert student <= 50_000 and 250_000 <= teacher <= 450_000
    assert teacher / student >= 5
