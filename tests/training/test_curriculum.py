"""Curriculum learning for the GAT: benign windows ordered easy → hard by a teacher VGAE's anomaly
score, starting near balanced and growing to every benign window by ``ramp_epochs``; attacks
always all in."""

from __future__ import annotations

import numpy as np
import pytest

from kdgat.data.datamodule import CurriculumSampler
from kdgat.training.settings import CurriculumSettings
from kdgat.training.stage import _anomaly_scores, build_module

from .conftest import classifier, compose_config, fusion_inputs, grid_point, trainer


@pytest.fixture(scope="module")
def difficulty(datamodule):
    """Training windows and their difficulty: a (tiny, untrained) VGAE's anomaly scores."""
    vgae, _, _ = fusion_inputs(datamodule)
    train = datamodule.train_graphs()
    return train, _anomaly_scores(vgae, datamodule.store, train)


def served(sampler) -> list[int]:
    return [int(g) for batch in sampler for g in batch]


@pytest.mark.parametrize("start_ratio", [1.0, 0.5])
def test_starts_near_balanced_and_grows_to_every_benign_window(datamodule, difficulty, start_ratio):
    graphs, scores = difficulty
    labels = datamodule.store.y[graphs]
    attacks, benign = set(graphs[labels == 1].tolist()), graphs[labels == 0]
    assert 0 < len(attacks) < len(benign)  # the synthetic training split is imbalanced
    sampler = CurriculumSampler(graphs, labels, scores, batch_size=32, seed=0,
                                start_ratio=start_ratio, ramp_epochs=4)
    counts = []
    for epoch in range(7):
        sampler.set_epoch(epoch)
        windows = served(sampler)
        assert len(windows) == len(set(windows)), "a window served twice in one epoch"
        assert attacks <= set(windows), f"epoch {epoch} leaves attack windows out"
        counts.append(len(windows) - len(attacks))
    assert counts[0] == round(start_ratio * len(attacks))  # 1.0: as many benign as attacks
    assert counts == sorted(counts)  # grows every epoch...
    assert counts[4] == counts[5] == counts[6] == len(benign)  # ...to all of them by ramp_epochs
    assert counts[3] < len(benign)
    assert counts[2] == pytest.approx((counts[0] + len(benign)) / 2, abs=1)  # linearly


def test_benign_windows_come_easiest_first(datamodule, difficulty):
    graphs, scores = difficulty
    labels = datamodule.store.y[graphs]
    by_graph = dict(zip(graphs.tolist(), scores.tolist()))
    benign = set(graphs[labels == 0].tolist())
    sampler = CurriculumSampler(graphs, labels, scores, batch_size=32, seed=0, ramp_epochs=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        shown = {g for g in served(sampler) if g in benign}
        held_back = benign - shown
        assert held_back, "the ramp should still hold windows back"
        # Every benign window shown is at most as hard as every one held back.
        assert max(by_graph[g] for g in shown) <= min(by_graph[g] for g in held_back)


def test_each_epoch_is_shuffled_with_the_seed(datamodule, difficulty):
    graphs, scores = difficulty
    labels = datamodule.store.y[graphs]
    first = CurriculumSampler(graphs, labels, scores, batch_size=32, seed=5, ramp_epochs=1)
    again = CurriculumSampler(graphs, labels, scores, batch_size=32, seed=5, ramp_epochs=1)
    first.set_epoch(1), again.set_epoch(1)
    assert served(first) == served(again)
    later = served(first)
    first.set_epoch(2)
    assert sorted(served(first)) == sorted(later) and served(first) != later


def test_lightning_serves_the_growing_curriculum_epoch_by_epoch(fresh_datamodule, difficulty):
    """Through the datamodule and a real Trainer (loaders reloaded every epoch, as run_stage asks)."""
    graphs, scores = difficulty
    datamodule = fresh_datamodule
    datamodule.batch_size = 128
    datamodule.set_curriculum(graphs, scores, CurriculumSettings(enabled=True, ramp_epochs=2))
    labels = datamodule.store.y[graphs]
    order = graphs[labels == 0][np.argsort(scores[labels == 0], kind="stable")].tolist()
    attacks = set(graphs[labels == 1].tolist())

    seen: dict[int, list[int]] = {}

    module = classifier(datamodule)
    original = module.training_step

    def training_step(batch, batch_idx):
        seen.setdefault(module.current_epoch, []).extend(batch.graph_index.tolist())
        return original(batch, batch_idx)

    module.training_step = training_step
    trainer(max_epochs=3, limit_train_batches=None, limit_val_batches=1,
            reload_dataloaders_every_n_epochs=1).fit(module, datamodule=datamodule)
    expected_counts = [len(attacks), (len(attacks) + len(order)) / 2, len(order)]
    for epoch, count in enumerate(expected_counts):
        windows = seen[epoch]
        assert len(windows) == len(set(windows))
        benign = [g for g in windows if g not in attacks]
        assert attacks <= set(windows)
        assert len(benign) == pytest.approx(count, abs=1)
        assert set(benign) == set(order[:len(benign)])


def test_build_module_scores_difficulty_with_the_scorer_run(teacher_runs, fresh_datamodule):
    cfg = compose_config("model=gat", "size=tiny", "mode=curriculum", "curriculum.ramp_epochs=3",
                         "curriculum.start_ratio=0.5")
    build_module(cfg, grid_point(cfg), fresh_datamodule, {"scorer": teacher_runs["vgae"].path})
    graphs, difficulty, settings = fresh_datamodule.curriculum
    assert np.array_equal(graphs, fresh_datamodule.train_graphs())
    assert (settings.start_ratio, settings.ramp_epochs) == (0.5, 3)
    scorer = teacher_runs["vgae"].module.network
    expected = _anomaly_scores(scorer, fresh_datamodule.store, graphs)
    assert np.allclose(difficulty, expected, rtol=1e-5, atol=1e-6)
    sampler = fresh_datamodule.train_dataloader().sampler
    assert isinstance(sampler, CurriculumSampler)
    assert sampler.benign_count(0) == round(0.5 * len(sampler.attacks))
