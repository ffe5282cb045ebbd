"""The datamodule's settings (import-light: the config store builds from this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kdgat.data.datasets import check_dataset_name
from kdgat.data.groups import check_validation_setting

# Unseen ids are spread over several buckets: one shared index made every unseen id of a new
# vehicle identical, and upstream models answered constantly on such vehicles.
DEFAULT_OOV_BUCKETS = 8


def check_windowing(window: int, stride: int, val_fraction: float, prefix: str = "") -> None:
    """The windowing rules, one place for the datamodule's settings and :class:`PrepareParams`."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"{prefix}window={window!r}: a window is at least 2 frames")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"{prefix}stride={stride!r}: the stride is at least 1 frame")
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{prefix}val_fraction={val_fraction!r}: the validation share of each "
                         "training file must lie strictly between 0 and 1 (default 0.2)")


@dataclass
class DataSettings:
    """Which dataset, how it becomes graphs, and how batches are served.

    Args:
        dataset: dataset name (a folder of ``data_root``; ``synthetic`` is generated on first use).
        data_root: folder holding the datasets (default ``KDGAT_DATA_ROOT``).
        cache_dir: folder for prepared graphs (default ``KDGAT_CACHE_DIR`` or ``<runs root>/.cache``).
        window: frames per window graph (default 100).
        stride: frames between window starts (default 100).
        val_fraction: share of each training file held out at its end for validation (default 0.2;
            ``validation=block`` only).
        validation: ``"block"`` (default: the last ``val_fraction`` of every training file), or
            leave-one-group-out by ``"vehicle"``, ``"attack"`` or ``"file"``: every training
            recording of the held-out group validates, every other one trains
            (:mod:`kdgat.data.groups`). Test folders are never used.
        holdout: the group held out in a grouped validation (``kia``, ``dos``, ``DoS-kia``);
            ``None``: the dataset's declared default. Must be ``None`` with ``block``.
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
    validation: str = "block"
    holdout: Optional[str] = None
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
        check_dataset_name(self.dataset)
        check_windowing(self.window, self.stride, self.val_fraction, prefix="datamodule.")
        check_validation_setting(self.validation, self.holdout, prefix="datamodule.")
        if self.num_workers < 0:
            raise ValueError(f"datamodule.num_workers={self.num_workers} must be >= 0 (0 assembles "
                             "batches in the training process)")
        if not 0 <= self.seed <= 2**32 - 1:
            raise ValueError(f"datamodule.seed={self.seed} must be an integer from 0 to {2**32 - 1}")
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
