"""The LightningDataModule serving train, validation and every test scenario of a dataset."""

from __future__ import annotations

from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdgat.data.batch import DEFAULT_OOV_BUCKETS, CANIdVocabulary, GraphBatch, GraphStore
from kdgat.data.cache import GraphCache, load_or_build
from kdgat.data.datasets import cache_root, dataset_folder
from kdgat.data.layout import discover
from kdgat.data.prepare import PrepareParams


class BatchSampler(Sampler):
    """Yields arrays of graph indices: shuffled per epoch from ``seed`` and the epoch, or in order.

    Args:
        graphs: the graph indices to serve.
        batch_size: graphs per batch.
        shuffle: reshuffle every epoch (seeded).
        seed: base seed; the epoch is added so every epoch differs and every run repeats.
        drop_last: leave out a last, smaller batch.
    """

    def __init__(self, graphs: np.ndarray, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False):
        self.graphs, self.batch_size, self.shuffle = np.asarray(graphs), batch_size, shuffle
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(len(self.graphs), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self):
        order = self.graphs
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start:start + self.batch_size]


class _Batches(Dataset):
    def __init__(self, store: GraphStore):
        self.store = store

    def __getitem__(self, graphs) -> GraphBatch:
        return self.store.assemble(graphs)


def _unbatched(batch):  # the sampler already groups graphs; nothing to collate
    return batch


class CANGraphDataModule(L.LightningDataModule):
    """Window graphs of one can-train-and-test dataset.

    ``prepare_data`` builds the graph cache once (or loads it), ``setup`` memory-maps it. The
    training loader reshuffles every epoch from ``seed``; validation and test loaders keep order.
    ``test_dataloader`` returns one loader per test folder, in ``test_names`` order.

    Args:
        dataset: dataset name (a folder of ``data_root``; ``synthetic`` is generated on first use).
        data_root: folder holding the datasets (default ``KDGAT_DATA_ROOT``).
        cache_dir: folder for prepared graphs (default ``KDGAT_CACHE_DIR`` or ``<runs root>/.cache``).
        window: frames per window graph (default 100).
        stride: frames between window starts (default 100).
        val_fraction: share of each training file held out at its end for validation (default 0.2).
        on_error: malformed rows: ``"fail"`` or ``"skip"`` (skipped rows are counted in the cache).
        batch_size: training graphs per batch.
        eval_batch_size: graphs per validation and test batch.
        oov_buckets: embedding buckets for CAN ids unseen in training.
        train_windows: ``"all"``, or ``"normals_only"`` to train on benign windows only (VGAE).
        seed: shuffle seed.
        synth_scale: size of the generated synthetic dataset (``small`` or ``medium``).
        num_workers: DataLoader worker processes (0: assemble batches in the training process).
    """

    def __init__(self, dataset: str = "synthetic", data_root: str | None = None,
                 cache_dir: str | None = None, window: int = 100, stride: int = 100,
                 val_fraction: float = 0.2, on_error: Literal["fail", "skip"] = "fail",
                 batch_size: int = 64, eval_batch_size: int = 256,
                 oov_buckets: int = DEFAULT_OOV_BUCKETS,
                 train_windows: Literal["all", "normals_only"] = "all", seed: int = 0,
                 synth_scale: Literal["small", "medium"] = "small", num_workers: int = 0):
        super().__init__()
        if train_windows not in ("all", "normals_only"):
            raise ValueError(f"train_windows must be 'all' or 'normals_only', got {train_windows!r}")
        self.dataset, self.data_root, self.cache_dir = dataset, data_root, cache_dir
        self.params = PrepareParams(window=window, stride=stride, val_fraction=val_fraction,
                                    on_error=on_error)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.oov_buckets, self.train_windows, self.seed = oov_buckets, train_windows, seed
        self.synth_scale, self.num_workers = synth_scale, num_workers
        self.store: GraphStore | None = None
        self._cache_folder = None

    def prepare_data(self) -> None:
        cache_dir = cache_root(self.cache_dir)
        folder = dataset_folder(self.dataset, self.data_root, cache_dir, synth_scale=self.synth_scale)
        self._cache_folder = load_or_build(discover(folder), self.params, cache_dir, self.dataset).folder

    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        if self._cache_folder is None:
            self.prepare_data()
        cache = GraphCache(self._cache_folder)
        vocabulary = CANIdVocabulary(np.asarray(cache.meta["vocabulary"]), self.oov_buckets)
        self.store = GraphStore(cache, vocabulary)
        for split in ("train", "val"):
            if len(self.store.graphs_of(split)) == 0:
                raise ValueError(f"dataset {self.dataset!r} has no {split} windows of "
                                 f"{self.params.window} frames; lower window= or val_fraction=")

    # Sizes the model builders need, known once setup has run.
    @property
    def num_ids(self) -> int:
        return self.store.vocabulary.size

    @property
    def num_node_features(self) -> int:
        return self.store.num_node_features

    @property
    def num_edge_features(self) -> int:
        return self.store.num_edge_features

    @property
    def test_names(self) -> list[str]:
        return self.store.meta["splits"][2:]

    def train_graphs(self) -> np.ndarray:
        graphs = self.store.graphs_of("train")
        if self.train_windows == "normals_only":
            graphs = graphs[self.store.y[graphs] == 0]
        return graphs

    def _loader(self, sampler: BatchSampler) -> DataLoader:
        return DataLoader(_Batches(self.store), sampler=sampler, batch_size=None,
                          collate_fn=_unbatched, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(BatchSampler(self.train_graphs(), self.batch_size, shuffle=True,
                                         seed=self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(BatchSampler(self.store.graphs_of("val"), self.eval_batch_size))

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(BatchSampler(self.store.graphs_of(name), self.eval_batch_size))
                for name in self.test_names]

    def transfer_batch_to_device(self, batch: GraphBatch, device: torch.device, dataloader_idx: int):
        return batch.to(device)
