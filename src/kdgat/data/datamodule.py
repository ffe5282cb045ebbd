"""The LightningDataModule serving train, validation and every test scenario of a dataset."""

from __future__ import annotations


import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kdgat.data.batch import CANIdVocabulary, GraphBatch, GraphStore
from kdgat.data.cache import GraphCache, load_or_build
from kdgat.data.datasets import cache_root, dataset_folder
from kdgat.data.groups import ValidationPlan
from kdgat.data.layout import discover
from kdgat.data.prepare import TRAIN, VAL, PrepareParams, validation_plan
from kdgat.data.settings import DataSettings


class OneClassValidation(ValueError):
    """Validation lacks benign or attack windows, so a threshold rule fit on it cannot work."""


def validation_classes(cache: GraphCache) -> list[dict]:
    """Per training file in validation: its validation windows by class, and (block validation)
    the smallest ``val_fraction`` that would move its last training attack window into validation
    (``None``: no attacks, or a grouped validation; ``> 1``: no ``val_fraction`` can).

    Block validation lists every training file, a grouped one the held-out recordings only.
    Reads the ``split``, ``file_index``, ``y`` and ``start_frame`` arrays only (one int per graph).
    """
    split, file_index = np.asarray(cache["split"]), np.asarray(cache["file_index"])
    y, start = np.asarray(cache["y"]).astype(bool), np.asarray(cache["start_frame"])
    window = cache.meta["params"]["window"]
    rows = []
    for index, file in enumerate(cache.meta["files"]):
        role = file.get("role", "block") if file["split"] == "train" else None
        if role not in ("block", "val"):
            continue
        mine = file_index == index
        val, train_attacks = mine & (split == VAL), mine & (split == TRAIN) & y
        needed = None
        # block validation starts at cut + window, cut = rows * (1 - val_fraction)
        if role == "block" and train_attacks.any():
            needed = 1.0 - (int(start[train_attacks].max()) - window) / file["rows"]
        rows.append({"file": file["relpath"], "benign": int((val & ~y).sum()),
                     "attack": int((val & y).sum()), "val_fraction_needed": needed})
    return rows


def _other_holdouts(cache: GraphCache) -> list[str]:
    """Holdouts of the cache's grouping whose recordings hold windows of both classes and leave
    something to train on, as ``NAME (b benign, a attack windows)``."""
    plan = cache.meta["validation"]
    file_index, y = np.asarray(cache["file_index"]), np.asarray(cache["y"]).astype(bool)
    index = {file["relpath"]: k for k, file in enumerate(cache.meta["files"])}
    members: dict[str, list[int]] = {}
    for relpath, group in plan["groups"].items():
        if group is not None:
            members.setdefault(group, []).append(index[relpath])
    usable = []
    for group, files in sorted(members.items()):
        if group == plan["holdout"] or len(files) == len(plan["groups"]):
            continue
        labels = y[np.isin(file_index, files)]
        if labels.any() and not labels.all():
            usable.append(f"{group} ({int((~labels).sum())} benign, {int(labels.sum())} attack windows)")
    return usable


def check_validation(cache: GraphCache, threshold_rule: str, dataset: str = "") -> None:
    """Refuse a validation split without both classes when ``threshold_rule`` fits on its labels.

    Raises:
        OneClassValidation: naming the split's counts, every validation file's windows by class,
            and the options: ``threshold_rule=fixed``; a larger ``val_fraction`` (block
            validation) or the other holdouts and groupings (grouped validation).
    """
    from kdgat.evaluation.thresholds import RULES_NEEDING_BOTH_CLASSES, one_class_options

    if threshold_rule not in RULES_NEEDING_BOTH_CLASSES:
        return
    total = cache.meta["graphs_per_split"]["val"]
    attacks = cache.meta["attacks_per_split"]["val"]
    if 0 < attacks < total:
        return
    missing = "attack" if attacks == 0 else "benign"
    files = validation_classes(cache)
    lines = "\n".join(f"  {f['file']}: {f['benign']} benign, {f['attack']} attack" for f in files)
    fraction = cache.meta["params"]["val_fraction"]
    plan = cache.meta.get("validation", {"validation": "block"})  # entries built before grouping: block
    if plan["validation"] != "block":
        mode, holdout = plan["validation"], plan["holdout"]
        what = (f"datamodule.validation={mode} datamodule.holdout={holdout}: the training "
                f"recordings of {mode} {holdout!r}")
        others = _other_holdouts(cache)
        advice = (f"holdouts of validation={mode} whose recordings hold both classes: "
                  f"{'; '.join(f'datamodule.holdout={o}' for o in others)}" if others else
                  f"no other {mode} holdout holds both classes")
        rest = [name for name in ("vehicle", "attack", "file") if name != mode]
        advice += (f"; or another grouping: datamodule.validation={' or '.join(rest)} "
                   "(datamodule.holdout=NAME), or datamodule.validation=block")
        per_file = "Validation windows per held-out recording"
        # val_fraction (one_class_options) cuts block validation only: not an option here
        options = "threshold_rule=fixed (fits no threshold on validation), or a holdout above"
    else:
        what = f"the last {fraction:g} of each training file"
        needed = [f["val_fraction_needed"] for f in files if f["val_fraction_needed"] is not None]
        reachable = [v for v in needed if v < 1.0]
        if missing == "attack" and reachable:
            advice = (f"datamodule.val_fraction={min(reachable) + 0.01:.2f} or more (now {fraction}) "
                      "would put attack windows of the training files into validation")
        elif missing == "attack":
            advice = f"no val_fraction puts attack windows into validation (now {fraction})"
        else:
            advice = f"validation holds only attack windows (val_fraction {fraction})"
        advice += ("; or hold out whole training recordings: datamodule.validation=vehicle, attack "
                   "or file (datamodule.holdout=NAME)")
        per_file = "Validation windows per training file"
        options = one_class_options()
    where = f"dataset {dataset!r}: " if dataset else ""
    raise OneClassValidation(
        f"{where}threshold_rule={threshold_rule} fits the threshold on validation windows of both "
        f"classes, but validation ({what}, {cache.meta['root']}) has {total} windows, "
        f"{attacks} attack: no {missing} windows.\n"
        f"{per_file}:\n{lines}\n{advice}.\n"
        f"Options: {options}")


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


class CurriculumSampler(BatchSampler):
    """Batches for curriculum learning: benign windows easy → hard, attacks always in.

    At epoch ``e`` the easiest ``n_e`` benign windows (lowest difficulty) join all attack windows,
    where ``n_e`` grows linearly from ``start_ratio`` × the attack count to every benign window at
    ``ramp_epochs``. Each epoch's selection is shuffled with the seed and the epoch.

    Args:
        graphs: training graph indices.
        labels: their window labels.
        difficulty: their difficulty (a teacher VGAE's anomaly score; used for benign windows).
        batch_size, seed: as :class:`BatchSampler`.
        start_ratio: benign : attack ratio at epoch 0 (1.0 = balanced).
        ramp_epochs: epochs until the natural ratio.
    """

    def __init__(self, graphs, labels, difficulty, batch_size: int, seed: int = 0,
                 start_ratio: float = 1.0, ramp_epochs: int = 10):
        super().__init__(graphs, batch_size, shuffle=True, seed=seed)
        graphs, labels = np.asarray(graphs), np.asarray(labels)
        benign = labels == 0
        self.attacks = graphs[~benign]
        self.benign_by_difficulty = graphs[benign][np.argsort(np.asarray(difficulty)[benign], kind="stable")]
        self.start_ratio, self.ramp_epochs = start_ratio, ramp_epochs
        self.set_epoch(0)

    def benign_count(self, epoch: int) -> int:
        total = len(self.benign_by_difficulty)
        start = min(total, int(round(self.start_ratio * max(len(self.attacks), 1))))
        progress = min(epoch / self.ramp_epochs, 1.0)
        return int(round(start + (total - start) * progress))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.graphs = np.concatenate([self.attacks, self.benign_by_difficulty[:self.benign_count(epoch)]])


class _Batches(Dataset):
    """Assembles the sampler's graph groups; for training, optionally hides the ids of a random
    share of windows (``unseen_rate``), seeded by the batch's graphs and ``seed``."""

    def __init__(self, store: GraphStore, unseen_rate: float = 0.0, seed: int = 0):
        self.store, self.unseen_rate, self.seed = store, unseen_rate, seed

    def __getitem__(self, graphs) -> GraphBatch:
        if not self.unseen_rate:
            return self.store.assemble(graphs)
        # Seeded by the batch's own graphs: reshuffled batches differ every epoch, reruns repeat.
        rng = np.random.default_rng([self.seed, int(graphs[0]), int(graphs[-1]), len(graphs)])
        return self.store.assemble(graphs, unseen=rng.random(len(graphs)) < self.unseen_rate)


def _unbatched(batch):  # the sampler already groups graphs; nothing to collate
    return batch


class CANGraphDataModule(L.LightningDataModule):
    """Window graphs of one can-train-and-test dataset (settings: :class:`DataSettings`).

    ``prepare_data`` builds the graph cache once (or loads it), ``setup`` memory-maps it. The
    training loader reshuffles every epoch from ``seed``; validation and test loaders keep order.
    ``test_dataloader`` returns one loader per test folder, in ``test_names`` order.
    """

    def __init__(self, **settings):
        super().__init__()
        self.settings = s = DataSettings(**settings)
        self.dataset, self.data_root, self.cache_dir = s.dataset, s.data_root, s.cache_dir
        self.params = PrepareParams(window=s.window, stride=s.stride, val_fraction=s.val_fraction,
                                    on_error=s.on_error, validation=s.validation, holdout=s.holdout)
        self.batch_size, self.eval_batch_size = s.batch_size, s.eval_batch_size
        self.oov_buckets, self.train_windows, self.seed = s.oov_buckets, s.train_windows, s.seed
        self.synth_scale, self.num_workers = s.synth_scale, s.num_workers
        self.store: GraphStore | None = None
        self.curriculum = None
        self._cache_folder = None

    def _layout(self):
        cache_dir = cache_root(self.cache_dir)
        folder = dataset_folder(self.dataset, self.data_root, cache_dir, synth_scale=self.synth_scale)
        return discover(folder), cache_dir

    def prepare_data(self) -> None:
        layout, cache_dir = self._layout()
        self._cache_folder = load_or_build(layout, self.params, cache_dir, self.dataset).folder

    def validation_plan(self) -> ValidationPlan:
        """Which training recordings train and which validate (lists the dataset's files, reads
        none); a bad ``holdout`` raises here, naming the valid groups."""
        return validation_plan(self._layout()[0], self.params, self.dataset)

    def check_validation(self, threshold_rule: str) -> None:
        """Prepare (or load) the cache and refuse a validation ``threshold_rule`` cannot fit on
        (:func:`check_validation`). A rule that fits nothing reads no data; a grouped validation
        still checks its holdout (:meth:`validation_plan`)."""
        from kdgat.evaluation.thresholds import RULES_NEEDING_BOTH_CLASSES

        if threshold_rule not in RULES_NEEDING_BOTH_CLASSES:
            if self.params.validation != "block":
                self.validation_plan()
            return
        check_validation(self.cache(), threshold_rule, self.dataset)

    def cache(self) -> GraphCache:
        """The prepared cache (built or loaded on first use), without setting up the store."""
        if self._cache_folder is None:
            self.prepare_data()
        return GraphCache(self._cache_folder)

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
                how = ("lower window= or val_fraction=" if self.params.validation == "block" else
                       f"lower window= or hold out another group than {self.params.holdout or 'the default'!r}")
                raise ValueError(f"dataset {self.dataset!r} has no {split} windows of "
                                 f"{self.params.window} frames; {how}")

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
    def validation_record(self) -> dict:
        """The cache's validation record: mode, holdout, training and validation recordings, the
        group of every training recording (``meta["validation"]``; block for older entries)."""
        return self.store.meta.get("validation", {"validation": "block", "holdout": None})

    @property
    def test_names(self) -> list[str]:
        return self.store.meta["splits"][2:]

    def train_graphs(self) -> np.ndarray:
        graphs = self.store.graphs_of("train")
        if self.train_windows == "normals_only":
            graphs = graphs[self.store.y[graphs] == 0]
        return graphs

    def set_curriculum(self, graphs: np.ndarray, difficulty: np.ndarray, settings) -> None:
        """Serve training windows by curriculum (``settings``: CurriculumSettings)."""
        self.curriculum = (np.asarray(graphs), np.asarray(difficulty), settings)

    def _loader(self, sampler: BatchSampler, train: bool = False) -> DataLoader:
        batches = _Batches(self.store, self.settings.unseen_id_rate if train else 0.0, self.seed)
        return DataLoader(batches, sampler=sampler, batch_size=None,
                          collate_fn=_unbatched, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if self.curriculum is not None:
            graphs, difficulty, settings = self.curriculum
            sampler = CurriculumSampler(graphs, self.store.y[graphs], difficulty, self.batch_size,
                                        seed=self.seed, start_ratio=settings.start_ratio,
                                        ramp_epochs=settings.ramp_epochs)
            # Lightning reloads loaders every epoch for the curriculum; start at the right stage.
            trainer = getattr(self, "trainer", None)
            sampler.set_epoch(trainer.current_epoch if trainer is not None else 0)
            return self._loader(sampler, train=True)
        return self._loader(BatchSampler(self.train_graphs(), self.batch_size, shuffle=True,
                                         seed=self.seed), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(BatchSampler(self.store.graphs_of("val"), self.eval_batch_size))

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(BatchSampler(self.store.graphs_of(name), self.eval_batch_size))
                for name in self.test_names]

    def transfer_batch_to_device(self, batch: GraphBatch, device: torch.device, dataloader_idx: int):
        return batch.to(device)
