"""The validation metrics a stage can be monitored on, and the checks that keep them meaningful.

``monitor`` (``kdgat-train monitor=val/auroc``) picks the metric that chooses ``best.ckpt``,
stops training early and drives ``scheduler=plateau``. ``val/loss`` needs no labels beyond the
loss itself; the label-based monitors (AUROC, average precision, best F1 of the validation
scores, :func:`kdgat.evaluation.metrics.selection_metrics`) are undefined — NaN — when
validation lacks benign or attack windows. Lightning would not stop on that: ``ModelCheckpoint``
stores a NaN as the worst value, so with NaN every epoch ``best.ckpt`` stays the first epoch,
and ``EarlyStopping`` stops at the first NaN. Such a monitor is therefore refused before the run
directory exists (:func:`check_validation_classes`) and, where the validation actually seen in
an epoch lacks a class (``trainer.limit_val_batches``), during training
(:func:`one_class_message`).

Import-light: ``kdgat-train`` checks the value before anything heavy is imported.
"""

from __future__ import annotations

# Metric -> the direction that is better.
MONITOR_MODES: dict[str, str] = {"val/loss": "min", "val/auroc": "max", "val/auprc": "max",
                                 "val/f1": "max"}
# Monitors computed from validation labels: undefined without both classes.
LABEL_MONITORS: tuple[str, ...] = ("val/auroc", "val/auprc", "val/f1")


def check_monitor(monitor, key: str = "monitor") -> str:
    """``monitor`` if it is one of :data:`MONITOR_MODES`, else a ``ValueError`` naming them."""
    if monitor not in MONITOR_MODES:
        raise ValueError(f"{key}={monitor!r} is not valid; choose one of: {', '.join(MONITOR_MODES)}")
    return monitor


def one_class_message(monitor: str, windows: int, attacks: int, where: str) -> str:
    """Why ``monitor`` cannot select anything on ``windows`` validation windows with one class."""
    missing = "attack" if attacks == 0 else "benign"
    return (f"monitor={monitor} is computed from validation labels, but {where} has {windows} "
            f"windows, {attacks} attack: no {missing} windows, so {monitor} is NaN and best.ckpt, "
            "early stopping and a plateau schedule would follow nothing. Use monitor=val/loss")


def check_validation_classes(monitor: str, datamodule) -> None:
    """Refuse a label-based ``monitor`` when the validation split lacks a class.

    ``datamodule``'s cache is prepared (or loaded) when needed; only its metadata is read.

    Raises:
        ValueError: naming the split's counts, every training file's validation windows by class
            and the ways out.
    """
    if monitor not in LABEL_MONITORS:
        return
    cache = datamodule.cache()  # its metadata only: no store, no vocabulary
    meta = cache.meta
    windows, attacks = meta["graphs_per_split"]["val"], meta["attacks_per_split"]["val"]
    if 0 < attacks < windows:
        return
    from kdgat.data.datamodule import validation_classes

    files = "\n".join(f"  {f['file']}: {f['benign']} benign, {f['attack']} attack"
                      for f in validation_classes(cache))
    params = meta["params"]
    if params.get("validation", "block") == "block":
        ways = (f"datamodule.val_fraction=..., now {params['val_fraction']}, or a grouped "
                "validation, datamodule.validation=vehicle|attack|file datamodule.holdout=NAME")
    else:
        ways = (f"another datamodule.holdout=NAME than {params.get('holdout')!r}, or another "
                f"datamodule.validation than {params['validation']!r}")
    raise ValueError(
        f"dataset {datamodule.dataset!r}: "
        + one_class_message(monitor, windows, attacks, "validation")
        + f", or put both classes into validation ({ways}; `kdgat data check` lists the groups; "
        "the default threshold_rule=f1 refuses this split too, naming values that work)."
        f"\nValidation windows per file:\n{files}")
