"""Running one stage end to end: data, module, teachers, fit, honest evaluation, run files."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from kdgat.grid import GridPoint
from kdgat.runs.rundir import read_status, set_status, write_json
from kdgat.training.checkpoints import AtomicCheckpointIO, load_checkpoint, resume_checkpoint


def _anomaly_scores(vgae, store, graphs: np.ndarray) -> np.ndarray:
    """A frozen VGAE's per-window anomaly scores (fusion reference, curriculum difficulty)."""
    from kdgat.training.evaluate import score_graphs

    return score_graphs(vgae, store, graphs, score=lambda b: vgae.anomaly_score(
        b.x, b.node_id, b.edge_index, b.edge_attr, b.batch, b.num_graphs))


def build_module(cfg, point: GridPoint, datamodule, needs: dict[str, Path]):
    """Instantiate the stage's LightningModule and attach its frozen teachers / inputs."""
    from hydra.utils import instantiate

    from kdgat.training.fusion import STATE_FEATURES
    from kdgat.training.teachers import load_network

    graph_dims = dict(num_ids=datamodule.num_ids, in_channels=datamodule.num_node_features,
                      edge_dim=datamodule.num_edge_features)
    network = instantiate(cfg.network)
    if point.learning_type == "fusion":
        module = instantiate(cfg.module, network=network)
        vgae = load_network(needs["vgae"], graph_dims)
        gat = load_network(needs["gat"], graph_dims)
        benign = datamodule.store.graphs_of("train")
        benign = benign[datamodule.store.y[benign] == 0]
        module.attach_inputs(vgae, gat, _anomaly_scores(vgae, datamodule.store, benign))
        teacher_dims = {"state_dim": len(STATE_FEATURES)}
    else:
        module = instantiate(cfg.module, network=network, **graph_dims)
        teacher_dims = graph_dims
    if "teacher" in needs:
        module.attach_teacher(load_network(needs["teacher"], teacher_dims))
    if "scorer" in needs:
        scorer = load_network(needs["scorer"], graph_dims)
        train = datamodule.train_graphs()
        datamodule.set_curriculum(train, _anomaly_scores(scorer, datamodule.store, train),
                                  instantiate(cfg.curriculum))
    return module


def _learning_curves(run_dir: Path) -> dict[str, list]:
    """Per-epoch values from the CSV logger (one row per logging call; epoch rows merged)."""
    # A run resumed after a Slurm requeue kept its earlier log as metrics.before_resume_N.csv.
    paths = sorted((run_dir / "logs").glob("metrics.before_resume_*.csv"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[-1])) + [run_dir / "logs" / "metrics.csv"]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return {}
    by_epoch: dict[int, dict[str, float]] = {}
    for path in paths:
        with open(path) as handle:
            for row in csv.DictReader(handle):
                epoch = by_epoch.setdefault(int(float(row["epoch"])), {})
                epoch.update({k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")})
    keys = sorted({k for values in by_epoch.values() for k in values})
    # An undefined value (val/auroc of one-class validation) is NaN in the log, None (null) here.
    return {k: [_float(by_epoch[e].get(k)) for e in sorted(by_epoch)] for k in keys}


def run_stage(cfg, point: GridPoint, run_dir: Path, needs: dict[str, Path]) -> dict:
    if point.learning_type == "baseline":  # one-pass fit, no Lightning loop
        from kdgat.training.baseline import run_baseline_stage

        return run_baseline_stage(cfg, point, run_dir)
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from kdgat.evaluation.plots import plot_learning_curves
    from kdgat.evaluation.protocols import protocol_settings
    from kdgat.models.sizes import count_parameters
    from kdgat.training.evaluate import evaluate

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.datamodule)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, point, datamodule, needs)

    monitor = module.monitor  # cfg.monitor (kdgat.training.monitors)
    mode = module.monitor_mode[monitor]
    checkpoints = run_dir / "checkpoints"
    # best.ckpt follows the monitored metric; last.ckpt is written after EVERY epoch by its own
    # callback (save_last=True on a monitored checkpoint only writes it when best improves, and a
    # requeued job would then train the later epochs twice). A NaN monitor would be stored as the
    # worst value (best.ckpt frozen at its first epoch): a label-based monitor refuses one-class
    # validation before the run and in every epoch (StageModule), and a NaN val/loss (diverged)
    # stops training through EarlyStopping's check_finite.
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, enable_version_counter=False),
                 ModelCheckpoint(dirpath=checkpoints, filename="last", monitor=None, save_top_k=1,
                                 every_n_epochs=1, enable_version_counter=False)]
    if cfg.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping.patience,
                                       min_delta=cfg.early_stopping.min_delta, check_finite=True))
    extra = {"reload_dataloaders_every_n_epochs": 1} if datamodule.curriculum is not None else {}
    plugins = [AtomicCheckpointIO()]
    if "SLURM_JOB_ID" in os.environ:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # submitit owns the preemption signal and the requeue (kdgat.launch); Lightning's own
        # SLURM requeue handler would race it.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, default_root_dir=str(run_dir),
                          logger=CSVLogger(str(run_dir), name="logs", version=""), plugins=plugins,
                          **extra)
    # A requeued job resumes from its newest checkpoint that loads (kdgat.training.checkpoints).
    resume, notes = resume_checkpoint(checkpoints)
    if notes:
        set_status(run_dir, "running", checkpoint_notes=[*read_status(run_dir).get("checkpoint_notes", []), *notes])
        print("kdgat: " + "\nkdgat: ".join(notes))
    log = run_dir / "logs" / "metrics.csv"
    if log.is_file():  # resuming (requeued job): the CSV logger would overwrite it
        log.rename(log.with_name(f"metrics.before_resume_{len(list(log.parent.glob('metrics.before_resume_*')))}.csv"))
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)

    best = checkpoints / "best.ckpt"
    if best.is_file():  # evaluate the best epoch, loaded strictly
        module.load_state_dict(load_checkpoint(best)["state_dict"])
    document = evaluate(module, datamodule, run_dir, threshold_rule=cfg.threshold_rule,
                        threshold_fixed=cfg.threshold_fixed, protocol=protocol_settings(cfg))
    curves = _learning_curves(run_dir)
    if curves:
        plot_learning_curves(curves, run_dir / "plots" / "learning_curves.png")
    pooled = document["test"]["pooled"]
    document["summary"] = {
        "grid_point": point.name, "parameters": count_parameters(module.network),
        "epochs": int(trainer.current_epoch), "best_epoch_metric": _float(
            callbacks[0].best_model_score), "monitor": monitor,
        "test_pooled_f1": pooled["f1"], "test_pooled_auroc": pooled["auroc"],
        "threshold": document["threshold"]["value"],
    }
    document["data"] = {"cache": str(datamodule.store.cache.folder),
                        "graphs_per_split": datamodule.store.meta["graphs_per_split"],
                        "vocabulary_size": len(datamodule.store.meta["vocabulary"])}
    document["dependencies"] = {role: str(path) for role, path in needs.items()}
    document["history"] = curves
    write_json(run_dir / "metrics.json", document)
    return document


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None

