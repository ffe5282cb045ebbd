"""The hydra-zen config store: every group, option and named experiment of kdgat.

Configs are generated from signatures — the settings dataclasses and the model builders — with
``builds(..., populate_full_signature=True)``; heavy classes (the Lightning modules, the
datamodule, the Trainer) are named by ``_target_`` string so that composing a config never imports
torch, Lightning, PyG or MLflow.

Groups and what they set (``_global_`` options write the grid dimension plus the parts they drive):

- ``dataset``: ``grid.dataset`` and ``grid.modality``;
- ``model``: ``grid.model``, ``grid.learning_type`` and the ``module`` (the Lightning stage, or
  for a baseline the one-pass fit of :mod:`kdgat.training.baseline`; ``majority`` also selects
  ``threshold_rule=fixed``, see :class:`kdgat.models.baselines.MajorityBaseline`);
- ``size``: ``grid.size``; with ``model`` it selects ``network`` (``{model}_{size}``; a baseline's
  estimator, from :mod:`kdgat.models.baselines`, is the same under every size name, so that a
  wrong size reaches the grid check, which names the one valid size);
- ``distillation``: ``grid.distillation`` and ``module.distillation.kind``;
- ``mode``: ``grid.mode`` and the training windows (``normals_only``) or the curriculum;
- ``optimizer``, ``scheduler``: ``module.optimizer`` / ``module.scheduler``;
- ``trainer``: the Lightning Trainer; ``cluster``: the Hydra launcher;
- top-level keys beside the groups: ``seed``, ``monitor`` (interpolated into ``module.monitor``),
  ``threshold_rule`` and ``threshold_fixed``, ``protocol`` (the settings of the
  ``causal_recording`` evaluation protocol), the roots, ``allow_targets``;
- ``experiment``: one per valid grid point, named after it (served by :mod:`kdgat.config.experiments`).
"""

from __future__ import annotations

import dataclasses
from typing import List

from hydra_zen import ZenField as zf
from hydra_zen import builds, make_config, store

from kdgat.data.datasets import MODALITIES
from kdgat.evaluation.protocols import CausalSettings
from kdgat.evaluation.thresholds import FIXED_THRESHOLD
from kdgat.data.settings import DataSettings
from kdgat.grid import LEARNING_TYPES, SIZES
from kdgat.models.baselines import BASELINE_BUILDERS
from kdgat.models.builders import BUILDERS
from kdgat.tracking import TrackingSettings
from kdgat.models.builders import SIZES as MODEL_SIZES
from kdgat.training.settings import (CurriculumSettings, DistillationSettings,
                                     EarlyStoppingSettings, FusionSettings, OptimizerSettings,
                                     SchedulerSettings, TrainerSettings)

DATA_DIMS = ("num_ids", "in_channels", "edge_dim", "state_dim")
STAGE_TARGETS = {
    "unsupervised": "kdgat.training.unsupervised.UnsupervisedModule",
    "classifier": "kdgat.training.classifier.ClassifierModule",
    "fusion": "kdgat.training.fusion.FusionModule",
    "baseline": "kdgat.training.baseline.BaselineModule",
}
# A constant score leaves a validation-fit threshold nothing to choose: at 0.5 the majority
# baseline predicts the training majority class (threshold_rule=f1 turns it into "always attack").
MODEL_SETTINGS = {"majority": {"threshold_rule": "fixed"}}


def targeting(settings: type, target: str, **defaults) -> type:
    """A config with ``settings``' typed fields (from its signature) that instantiates ``target``."""
    base = builds(settings, populate_full_signature=True, **defaults)
    return dataclasses.make_dataclass(
        f"{target.rsplit('.', 1)[-1]}Conf",
        [("_target_", str, dataclasses.field(default=target))], bases=(base,))


OptimizerConf = builds(OptimizerSettings, populate_full_signature=True)
SchedulerConf = builds(SchedulerSettings, populate_full_signature=True)
DistillationConf = builds(DistillationSettings, populate_full_signature=True)
CurriculumConf = builds(CurriculumSettings, populate_full_signature=True)
FusionConf = builds(FusionSettings, populate_full_signature=True)
EarlyStoppingConf = builds(EarlyStoppingSettings, populate_full_signature=True)
TrackingConf = builds(TrackingSettings, populate_full_signature=True)
ProtocolConf = builds(CausalSettings, populate_full_signature=True)
DataModuleConf = targeting(DataSettings, "kdgat.data.datamodule.CANGraphDataModule",
                           dataset="${grid.dataset}", data_root="${data_root}",
                           cache_dir="${cache_dir}", seed="${seed}")
TrainerConf = targeting(TrainerSettings, "lightning.pytorch.Trainer")


def stage_conf(learning_type: str, model: str):
    """The ``module`` config of a stage: the Lightning module's arguments, data dims excluded."""
    # The top-level ``monitor`` (one key for every stage of a pipeline); a saved config holds
    # the resolved value.
    fields = dict(optimizer=OptimizerConf, scheduler=SchedulerConf, distillation=DistillationConf,
                  monitor="${monitor}")
    if learning_type == "fusion":
        fields.update(kind=model, fusion=FusionConf)
    base = make_config(**fields)
    return dataclasses.make_dataclass(
        f"{learning_type.title()}ModuleConf",
        [("_target_", str, dataclasses.field(default=STAGE_TARGETS[learning_type]))], bases=(base,))


GridConf = make_config(modality="automotive", dataset="synthetic", learning_type="classifier",
                       model="gat", size="student", distillation="no", mode="all_samples")

TrainConf = make_config(
    hydra_defaults=[
        "_self_",
        {"dataset": "synthetic"}, {"model": "gat"}, {"size": "student"},
        {"distillation": "no"}, {"mode": "all_samples"},
        {"network": "${model}_${size}"},
        {"optimizer": "adam"}, {"scheduler": "none"}, {"trainer": "default"},
        {"cluster": "local"}, {"experiment": None},
    ],
    grid=GridConf,
    seed=zf(int, 0),
    runs_root="${oc.env:KDGAT_RUNS_ROOT,experimentruns}",
    data_root="${oc.env:KDGAT_DATA_ROOT,null}",
    cache_dir="${oc.env:KDGAT_CACHE_DIR,${runs_root}/.cache}",
    datamodule=DataModuleConf,
    network=None,
    module=None,
    curriculum=CurriculumConf,
    early_stopping=EarlyStoppingConf,
    trainer=TrainerConf,
    tracking=TrackingConf,
    # Validation metric that picks best.ckpt, stops early and drives scheduler=plateau
    # (kdgat.training.monitors: val/loss, val/auroc, val/auprc, val/f1).
    monitor=zf(str, "val/loss"),
    # How the test-time decision threshold is set on validation (kdgat.evaluation.thresholds:
    # f1, youden, fixed) and the threshold of threshold_rule=fixed, on the model's score scale.
    threshold_rule=zf(str, "f1"),
    threshold_fixed=zf(float, FIXED_THRESHOLD),
    # The causal_recording evaluation protocol, reported beside the strict one
    # (kdgat.evaluation.protocols).
    protocol=ProtocolConf,
    # Outside callables a config may instantiate, named on purpose (kdgat.runs.allowlist).
    allow_targets=zf(List[str], []),
    run_dir=None,
    zen_dataclass={"cls_name": "TrainConf"},
)


def _register() -> None:
    store(TrainConf, name="train")
    for modality, datasets in MODALITIES.items():
        for dataset in datasets:
            store({"grid": {"modality": modality, "dataset": dataset}}, group="dataset", name=dataset,
                  package="_global_")
    for learning_type, models in LEARNING_TYPES.items():
        for model in models:
            store({"grid": {"learning_type": learning_type, "model": model},
                   "module": stage_conf(learning_type, model), **MODEL_SETTINGS.get(model, {})},
                  group="model", name=model, package="_global_")
    for size in SIZES:
        store({"grid": {"size": size}}, group="size", name=size, package="_global_")
    for model, builder in BUILDERS.items():
        for size, numbers in MODEL_SIZES[model].items():
            store(builds(builder, populate_full_signature=True, zen_partial=True,
                         zen_exclude=DATA_DIMS, **numbers),
                  group="network", name=f"{model}_{size}")
    for model, builder in BASELINE_BUILDERS.items():
        for size in SIZES:
            store(builds(builder, populate_full_signature=True), group="network", name=f"{model}_{size}")
    for kind in ("no", "standard", "topology_preserving"):
        store({"grid": {"distillation": kind}, "module": {"distillation": {"kind": kind}}},
              group="distillation", name=kind, package="_global_")
    mode_settings = {
        "all_samples": {},
        "normals_only": {"datamodule": {"train_windows": "normals_only"}},
        "curriculum": {"curriculum": {"enabled": True}},
    }
    for mode, settings in mode_settings.items():
        store({"grid": {"mode": mode}, **settings}, group="mode", name=mode, package="_global_")
    for name in ("adam", "adamw", "sgd"):
        store(OptimizerConf(name=name), group="optimizer", name=name, package="module.optimizer")
    for name in ("none", "cosine", "step", "plateau"):
        store(SchedulerConf(name=name), group="scheduler", name=name, package="module.scheduler")
    store(TrainerConf(), group="trainer", name="default")
    store(TrainerConf(max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                      deterministic=False), group="trainer", name="smoke")
    store(TrainerConf(accelerator="gpu", devices="1", precision="32-true", deterministic=False),
          group="trainer", name="gpu")
    from kdgat.launch.profiles import register as register_clusters

    # conf/cluster/*.yaml (and $KDGAT_CONF_DIR/cluster/*.yaml) plus hydra/launcher=kdgat_slurm.
    register_clusters(store)
    from hydra.conf import HydraConf, JobConf, RunDir, SweepDir

    # Hydra's own output stays out of the way: runs live in grid paths, and a sweep keeps its
    # summary under <runs root>/.sweeps/.
    store(HydraConf(job=JobConf(name="kdgat", chdir=False), output_subdir=None,
                    callbacks={"sweep_summary": {"_target_": "kdgat.config.callbacks.SweepSummary"}},
                    run=RunDir("${runs_root}/.hydra/${now:%Y-%m-%d_%H-%M-%S-%f}"),
                    sweep=SweepDir("${runs_root}/.sweeps/${now:%Y-%m-%d_%H-%M-%S-%f}", "${hydra.job.num}")),
          name="config", group="hydra")


_register()
