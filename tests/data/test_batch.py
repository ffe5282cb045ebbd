"""Batches sliced from the flat arrays, the CAN-id vocabulary with OOV buckets, the batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import KNOWN_IDS, TEST_01, TEST_02, UNKNOWN_VEHICLE_IDS, UNSEEN_IDS, VAL_ONLY_ID
from kdgat.data.batch import CANIdVocabulary, GraphStore
from kdgat.data.cache import load_or_build
from kdgat.data.datamodule import BatchSampler
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams


@pytest.fixture(scope="module")
def store(shared_tiny_dataset, tmp_path_factory):
    cache = load_or_build(discover(shared_tiny_dataset), PrepareParams(window=10, stride=5),
                          tmp_path_factory.mktemp("cache"), "tiny")
    return GraphStore(cache)


FIELDS = ("x", "node_id", "edge_index", "edge_attr", "batch", "y", "graph_index")


def concatenated_singles(store: GraphStore, graphs) -> dict[str, torch.Tensor]:
    """Each graph assembled alone, then joined the way PyG's Batch does (edge indices shifted)."""
    singles = [store.assemble(np.array([g])) for g in graphs]
    offsets = np.cumsum([0] + [len(s.x) for s in singles])
    return {
        "x": torch.cat([s.x for s in singles]),
        "node_id": torch.cat([s.node_id for s in singles]),
        "edge_index": torch.cat([s.edge_index + int(o) for s, o in zip(singles, offsets)], dim=1),
        "edge_attr": torch.cat([s.edge_attr for s in singles]),
        "batch": torch.cat([torch.full((len(s.x),), k) for k, s in enumerate(singles)]),
        "y": torch.cat([s.y for s in singles]),
        "graph_index": torch.cat([s.graph_index for s in singles]),
    }


@pytest.mark.parametrize("graphs", [[0, 1, 2], [30, 3, 17, 3 + 1, 50], list(range(60))])
def test_batch_equals_singles_concatenated(store, graphs):
    graphs = [g % len(store) for g in graphs]
    batch = store.assemble(np.array(graphs))
    expected = concatenated_singles(store, graphs)
    for field in FIELDS:
        assert torch.equal(getattr(batch, field), expected[field]), field
    assert batch.num_graphs == len(graphs)


def test_single_graph_is_the_cache_slice(store):
    cache = store.cache
    for g in (0, len(store) // 2, len(store) - 1):
        one = store.assemble(np.array([g]))
        nodes = slice(cache["node_ptr"][g], cache["node_ptr"][g + 1])
        edges = slice(cache["edge_ptr"][g], cache["edge_ptr"][g + 1])
        np.testing.assert_array_equal(one.x.numpy(), cache["x"][nodes])
        np.testing.assert_array_equal(one.edge_index.numpy(), cache["edge_index"][:, edges])
        np.testing.assert_array_equal(one.edge_attr.numpy(), cache["edge_attr"][edges])
        np.testing.assert_array_equal(one.node_id.numpy(), store.vocabulary(cache["node_can_id"][nodes]))
        assert one.y.tolist() == [int(cache["y"][g])] and one.batch.unique().tolist() == [0]


def test_batch_follows_the_contract(store):
    batch = store.assemble(store.graphs_of("train")[:8])
    n, e = len(batch.x), batch.edge_index.shape[1]
    assert batch.x.dtype == torch.float32 and batch.x.shape == (n, store.num_node_features)
    assert batch.node_id.dtype == torch.int64 and batch.node_id.shape == (n,)
    assert batch.edge_index.dtype == torch.int64 and 0 <= int(batch.edge_index.min())
    assert int(batch.edge_index.max()) < n
    # an edge joins two nodes of the same graph
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    assert batch.edge_attr.dtype == torch.float32 and batch.edge_attr.shape == (e, store.num_edge_features)
    assert batch.batch.dtype == torch.int64 and torch.equal(batch.batch, batch.batch.sort().values)
    assert batch.y.dtype == torch.int64 and batch.graph_index.dtype == torch.int64
    assert int(batch.node_id.max()) < store.vocabulary.size
    moved = batch.to("cpu")
    assert moved.num_graphs == batch.num_graphs
    assert all(torch.equal(getattr(moved, field), getattr(batch, field)) for field in FIELDS)
    # batches are copies: writing into one never reaches the cache
    batch.x.zero_()
    assert store.assemble(store.graphs_of("train")[:8]).x.abs().sum() > 0


def test_unseen_ids_map_to_oov_buckets(store):
    vocabulary = store.vocabulary
    known = np.asarray(store.meta["vocabulary"])
    assert known.tolist() == sorted(KNOWN_IDS + [0])
    np.testing.assert_array_equal(vocabulary(known), np.arange(len(known)))
    unseen = np.array([VAL_ONLY_ID, *UNSEEN_IDS, *UNKNOWN_VEHICLE_IDS])
    buckets = vocabulary(unseen)
    assert (buckets >= len(known)).all() and (buckets < vocabulary.size).all()
    assert len(set(vocabulary(np.array(UNSEEN_IDS)).tolist())) >= 4  # spread, not one shared index
    assert vocabulary.size == len(known) + 8
    # the same in the batches of the test scenarios
    for scenario, ids in ((TEST_01, UNSEEN_IDS), (TEST_02, UNKNOWN_VEHICLE_IDS)):
        graphs = store.graphs_of(scenario)
        nodes = np.concatenate([np.arange(store.node_ptr[g], store.node_ptr[g + 1]) for g in graphs])
        batch = store.assemble(graphs)
        is_unseen = np.isin(store.cache["node_can_id"][nodes], ids)
        assert is_unseen.any()
        assert (batch.node_id.numpy()[is_unseen] >= len(known)).all()
        assert (batch.node_id.numpy()[~is_unseen] < len(known)).all()


def test_vocabulary_edge_cases():
    vocabulary = CANIdVocabulary(np.array([0x10, 0x20, 0x30]), oov_buckets=4)
    ids = np.array([0x10, 0x30, 0x0F, 0x11, 0x31, 0x1FFFFFFF, 0x20])
    mapped = vocabulary(ids)
    assert mapped[[0, 1, 6]].tolist() == [0, 2, 1]
    assert ((mapped[2:6] >= 3) & (mapped[2:6] < 7)).all()
    consecutive = vocabulary(np.arange(0x700, 0x740))
    assert set(consecutive.tolist()) == {3, 4, 5, 6}  # every bucket used
    np.testing.assert_array_equal(vocabulary(ids), mapped)  # deterministic
    empty = CANIdVocabulary(np.array([], dtype=np.int64), oov_buckets=2)
    assert set(empty(np.arange(50)).tolist()) == {0, 1}
    with pytest.raises(ValueError, match="oov_buckets must be >= 1"):
        CANIdVocabulary(np.array([1]), oov_buckets=0)


def test_graphs_of_unknown_split_lists_the_splits(store):
    with pytest.raises(KeyError, match="test_01_known_vehicle_known_attack"):
        store.graphs_of("test")


# --------------------------------------------------------------------------- the sampler
def order(sampler: BatchSampler) -> list[int]:
    return [int(g) for batch in sampler for g in batch]


def test_seeded_shuffle_repeats_and_changes_per_epoch():
    graphs = np.arange(100, 197)
    sampler = BatchSampler(graphs, batch_size=10, shuffle=True, seed=3)
    sampler.set_epoch(0)
    epoch0 = order(sampler)
    again = BatchSampler(graphs, batch_size=10, shuffle=True, seed=3)
    again.set_epoch(0)
    assert order(again) == epoch0
    sampler.set_epoch(1)
    epoch1 = order(sampler)
    assert epoch1 != epoch0
    other_seed = BatchSampler(graphs, batch_size=10, shuffle=True, seed=4)
    assert order(other_seed) != epoch0
    for epoch in (epoch0, epoch1):
        assert sorted(epoch) == graphs.tolist()  # every graph exactly once
    assert epoch0 != graphs.tolist()


def test_batches_cover_every_graph_once_in_order_without_shuffle():
    graphs = np.arange(23)
    sampler = BatchSampler(graphs, batch_size=5)
    batches = list(sampler)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3] and len(sampler) == 5
    assert order(sampler) == list(range(23))
    dropping = BatchSampler(graphs, batch_size=5, shuffle=True, drop_last=True)
    assert [len(b) for b in dropping] == [5, 5, 5, 5] and len(dropping) == 4
    assert len(BatchSampler(np.arange(20), batch_size=5)) == 4
