"""The LightningDataModule: train, validation and every test scenario, with the right counts."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import KNOWN_IDS, TEST_01, TEST_02, TEST_05
from kdgat.data.datamodule import CANGraphDataModule, CurriculumSampler
from kdgat.data.graphs import EDGE_FEATURES, NODE_FEATURES


def datamodule(root, tmp_path, **kwargs) -> CANGraphDataModule:
    settings = dict(dataset=root.name, data_root=str(root.parent), cache_dir=str(tmp_path / "cache"),
                    window=10, stride=10, batch_size=4, eval_batch_size=3)
    module = CANGraphDataModule(**{**settings, **kwargs})
    module.prepare_data()
    module.setup("fit")
    return module


def served(loader) -> list[int]:
    """Graph indices in the order a loader serves them."""
    return [int(g) for batch in loader for g in batch.graph_index]


def labels(loader) -> list[int]:
    return [int(y) for batch in loader for y in batch.y]


def test_serves_every_split_with_the_right_counts(shared_tiny_dataset, tmp_path):
    module = datamodule(shared_tiny_dataset, tmp_path)
    assert module.test_names == [TEST_01, TEST_02, TEST_05]
    train = served(module.train_dataloader())
    assert len(train) == len(set(train)) == 17
    assert served(module.val_dataloader()) == module.store.graphs_of("val").tolist() and len(module.store.graphs_of("val")) == 2
    tests = module.test_dataloader()
    assert [len(served(loader)) for loader in tests] == [6, 5, 4]
    assert [sum(labels(loader)) for loader in tests] == [4, 1, 0]
    for name, loader in zip(module.test_names, tests):
        assert served(loader) == module.store.graphs_of(name).tolist()  # in order
    # batch sizes: training 4, evaluation 3
    assert [b.num_graphs for b in module.train_dataloader()] == [4, 4, 4, 4, 1]
    assert [b.num_graphs for b in tests[0]] == [3, 3]
    assert module.num_ids == len(KNOWN_IDS) + 1 + 8
    assert module.num_node_features == len(NODE_FEATURES)
    assert module.num_edge_features == len(EDGE_FEATURES)


def test_normals_only_drops_attack_windows_from_training_only(shared_tiny_dataset, tmp_path):
    everything = datamodule(shared_tiny_dataset, tmp_path)
    normals = datamodule(shared_tiny_dataset, tmp_path, train_windows="normals_only")
    assert sum(labels(everything.train_dataloader())) == 1
    assert sorted(served(normals.train_dataloader())) == sorted(
        g for g in served(everything.train_dataloader()) if everything.store.y[g] == 0)
    assert len(served(normals.train_dataloader())) == 16 and sum(labels(normals.train_dataloader())) == 0
    # validation and test keep their attack windows
    assert labels(normals.val_dataloader()) == labels(everything.val_dataloader()) and 1 in labels(normals.val_dataloader())
    assert [labels(a) for a in normals.test_dataloader()] == [labels(b) for b in everything.test_dataloader()]
    assert normals.store.cache.folder == everything.store.cache.folder  # one cache for both


def test_training_order_is_seeded_and_changes_per_epoch(shared_tiny_dataset, tmp_path):
    module = datamodule(shared_tiny_dataset, tmp_path, seed=7)
    loader = module.train_dataloader()
    loader.sampler.set_epoch(0)
    first = served(loader)
    assert served(loader) == first  # same epoch, same order
    loader.sampler.set_epoch(1)
    assert served(loader) != first and sorted(served(loader)) == sorted(first)
    repeat = datamodule(shared_tiny_dataset, tmp_path, seed=7).train_dataloader()
    assert served(repeat) == first


def test_setup_alone_prepares_the_cache(shared_tiny_dataset, tmp_path):
    module = CANGraphDataModule(dataset=shared_tiny_dataset.name, data_root=str(shared_tiny_dataset.parent),
                                cache_dir=str(tmp_path / "cache"), window=10, stride=10)
    module.setup("test")
    assert len(module.store) == 34 and (tmp_path / "cache" / shared_tiny_dataset.name).is_dir()


def test_no_validation_windows_is_a_clear_error(shared_tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="no val windows of 30 frames"):
        datamodule(shared_tiny_dataset, tmp_path, window=30, stride=30, val_fraction=0.1)


@pytest.mark.parametrize("setting,message", [
    ({"train_windows": "attacks_only"}, "train_windows='attacks_only' is not valid; choose one of: all, normals_only"),
    ({"on_error": "ignore"}, "on_error='ignore' is not valid"),
    ({"batch_size": 0}, "batch_size=0 must be >= 1"),
])
def test_invalid_settings_name_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        CANGraphDataModule(**setting)


def test_curriculum_sampler_adds_harder_benign_windows_per_epoch():
    graphs = np.arange(100, 120)
    labels = np.array([1, 0, 0, 0] * 5)  # 5 attack windows, 15 benign
    difficulty = np.arange(20)[::-1].astype(float)  # later graphs are easier
    sampler = CurriculumSampler(graphs, labels, difficulty, batch_size=4, seed=1, start_ratio=1.0,
                                ramp_epochs=2)
    attacks, benign = set(graphs[labels == 1].tolist()), graphs[labels == 0]
    easiest = benign[np.argsort(difficulty[labels == 0], kind="stable")].tolist()
    seen = []
    for epoch, count in ((0, 5), (1, 10), (2, 15), (5, 15)):
        sampler.set_epoch(epoch)
        served_now = [int(g) for batch in sampler for g in batch]
        assert len(served_now) == len(set(served_now)) == 5 + count
        assert set(served_now) == attacks | set(easiest[:count])
        seen.append(served_now)
    assert seen[2] != seen[3]  # reshuffled every epoch


def test_missing_dataset_names_where_it_looked(tmp_path):
    module = CANGraphDataModule(dataset="hcrl_sa", data_root=str(tmp_path / "nowhere"),
                                cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        module.prepare_data()


def test_oov_buckets_setting(shared_tiny_dataset, tmp_path):
    module = datamodule(shared_tiny_dataset, tmp_path, oov_buckets=3)
    assert module.num_ids == len(module.store.meta["vocabulary"]) + 3
    batch = next(iter(module.test_dataloader()[0]))
    assert int(batch.node_id.max()) < module.num_ids
    assert np.isin(np.arange(len(module.store.meta["vocabulary"]), module.num_ids),
                   module.store.node_id).any()
