"""The datamodule's settings (import-light: the config store builds from this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Unseen ids are spread over several buckets: one shared index made every unseen id of a new
# vehicle identical, and upstream models answered constantly on such vehicles.
DEFAULT_OOV_BUCKETS = 8


@dataclass
class DataSettings:
    """Which dataset, how it becomes graphs, and how batches are served.

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
        unseen_id_rate: share of training windows whose CAN ids are all replaced by their
            out-of-vocabulary buckets, as if recorded on a vehicle never seen in training. Fuzzing
            attacks put unfamiliar ids into training, so without this a model learns "unfamiliar
            ids = attack" and flags every window of a new vehicle. Validation and test windows
            are never changed.
    """

    dataset: str = "synthetic"
    data_root: Optional[str] = None
    cache_dir: Optional[str] = None
    window: int = 100
    stride: int = 100
    val_fraction: float = 0.2
    on_error: str = "fail"
    batch_size: int = 64
    eval_batch_size: int = 256
    oov_buckets: int = DEFAULT_OOV_BUCKETS
    train_windows: str = "all"
    seed: int = 0
    synth_scale: str = "small"
    num_workers: int = 0
    unseen_id_rate: float = 0.25

    def __post_init__(self):
        for name, valid in (("train_windows", ("all", "normals_only")), ("on_error", ("fail", "skip")),
                            ("synth_scale", ("small", "medium"))):
            if getattr(self, name) not in valid:
                raise ValueError(f"datamodule.{name}={getattr(self, name)!r} is not valid; "
                                 f"choose one of: {', '.join(valid)}")
        if not 0.0 <= self.unseen_id_rate <= 1.0:
            raise ValueError(f"datamodule.unseen_id_rate={self.unseen_id_rate} must be in [0, 1]")
        for name in ("batch_size", "eval_batch_size", "oov_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"datamodule.{name}={getattr(self, name)} must be >= 1")
