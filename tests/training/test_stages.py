"""The training stages end to end: each fits and validates in Lightning, optimizers and schedules
behave, evaluation fits its threshold on validation only, and ``kdgat-train`` leaves complete run
directories (one stage in the default suite, the whole dependency chain with KDGAT_RUN_SLOW=1).
"""

from __future__ import annotations

import copy
import gzip
import math

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from kdgat.evaluation.thresholds import choose_threshold
from kdgat.models import builders
from kdgat.models.sizes import count_parameters
from kdgat.training.evaluate import evaluate, score_graphs
from kdgat.training.teachers import load_network

from .conftest import (check_run_dir, classifier, fusion, graph_dims, one_batch_per_class, only_run,
                       trainer, unsupervised)

STAGES = ["vgae", "gat", "dqn", "mlp"]


def build(stage: str, datamodule, **settings):
    torch.manual_seed(0)
    if stage == "vgae":
        return unsupervised(datamodule, **settings)
    if stage == "gat":
        return classifier(datamodule, **settings)
    return fusion(datamodule, stage, **settings)


# --------------------------------------------------------------------------- in-process stages
@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_fits_one_epoch_and_validates(stage, datamodule):
    module = build(stage, datamodule)
    before = copy.deepcopy(module.network.state_dict())
    fit = trainer(limit_val_batches=None)  # every validation window: both classes
    fit.fit(module, datamodule=datamodule)
    metrics = fit.callback_metrics
    assert fit.global_step == 2 and fit.current_epoch == 1
    for key in ("train/loss", "train/task_loss", "val/loss", "val/task_loss"):
        assert torch.isfinite(metrics[key]), key
    assert 0.0 <= float(metrics["val/auroc"]) <= 1.0
    assert any(not torch.equal(v, before[k]) for k, v in module.network.state_dict().items())
    batch = one_batch_per_class(datamodule)
    scores = module.eval().score(batch)
    assert scores.shape == (batch.num_graphs,) and torch.isfinite(scores).all()
    if stage != "vgae":
        assert ((0 <= scores) & (scores <= 1)).all()


def test_validation_auroc_of_one_class_is_nan_never_zero(datamodule):
    """The first two validation batches hold benign windows only: AUROC is undefined there."""
    store = datamodule.store
    first = store.graphs_of("val")[:2 * datamodule.eval_batch_size]
    assert store.y[first].max() == 0
    fit = trainer(limit_val_batches=2)
    fit.fit(build("gat", datamodule), datamodule=datamodule)
    assert math.isnan(float(fit.callback_metrics["val/auroc"]))


def test_vgae_loss_never_reads_the_labels(datamodule):
    module = build("vgae", datamodule).eval()
    batch = one_batch_per_class(datamodule)
    flipped = copy.copy(batch)
    flipped.y = 1 - batch.y
    first, second = module.losses(batch), module.losses(flipped)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert set(first) >= {"mse", "id_ce", "neighbour_bce", "kl", "task_loss", "loss"}
    vgae = module.network
    expected = (first["mse"] + vgae.id_weight * first["id_ce"] + vgae.neighbour_weight
                * first["neighbour_bce"] + vgae.kl_weight * first["kl"])
    assert torch.allclose(first["task_loss"], expected)
    assert (vgae.id_weight, vgae.neighbour_weight, vgae.kl_weight) == (0.1, 0.05, 0.01)


def test_gat_loss_is_cross_entropy_on_window_labels(datamodule):
    module = build("gat", datamodule).eval()
    batch = one_batch_per_class(datamodule)
    logits = module.network(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                            batch.num_graphs)
    assert torch.allclose(module.losses(batch)["loss"], torch.nn.functional.cross_entropy(logits, batch.y))
    assert torch.allclose(module.score(batch), logits.softmax(-1)[:, 1])


def test_monitor_is_validated(datamodule):
    with pytest.raises(ValueError, match="monitor='val/accuracy' is not valid; choose one of: "
                                         "val/loss, val/auroc, val/auprc, val/f1"):
        classifier(datamodule, monitor="val/accuracy")


# --------------------------------------------------------------------------- optimizers, schedules
class LearningRates(L.Callback):
    """The learning rate at the start of every training epoch."""

    def __init__(self):
        self.values = []

    def on_train_epoch_start(self, trainer, module):
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


LR, MIN_LR, GAMMA = 0.01, 1e-4, 0.5


def expected_rates(scheduler: str, warmup: int, epochs: int) -> list[float]:
    """Linear warm-up over ``warmup`` epochs, then cosine to MIN_LR over the rest / halving every
    epoch (step_size 1) / constant."""
    rates = []
    for epoch in range(epochs):
        scale = min(1.0, (epoch + 1) / (warmup + 1)) if warmup else 1.0
        after = max(epoch - warmup, 0)
        if scheduler == "cosine":
            base = MIN_LR / LR
            scale *= base + (1 - base) * 0.5 * (1 + math.cos(math.pi * min(after / (epochs - warmup), 1)))
        elif scheduler == "step":
            scale *= GAMMA ** after
        rates.append(LR * scale)
    return rates


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@pytest.mark.parametrize("scheduler", ["none", "cosine", "step", "plateau"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_optimizer_and_schedule_configure_and_step(optimizer, scheduler, datamodule):
    warmup = 0 if scheduler == "plateau" else 2
    epochs = 5
    module = build("gat", datamodule, optimizer=dict(name=optimizer, lr=LR, weight_decay=1e-3),
                   scheduler=dict(name=scheduler, warmup_epochs=warmup, step_size=1, gamma=GAMMA,
                                  min_lr=MIN_LR, patience=100))
    before = copy.deepcopy(module.network.state_dict())
    rates = LearningRates()
    fit = trainer(max_epochs=epochs, limit_train_batches=1, limit_val_batches=1, callbacks=[rates])
    fit.fit(module, datamodule=datamodule)
    assert fit.current_epoch == epochs
    used = fit.optimizers[0]
    assert type(used) is OPTIMIZERS[optimizer]
    assert used.defaults["weight_decay"] == 1e-3
    if optimizer == "sgd":
        assert used.defaults["momentum"] == 0.9
    assert any(not torch.equal(v, before[k]) for k, v in module.network.state_dict().items())
    assert rates.values == pytest.approx(expected_rates(scheduler, warmup, epochs), rel=1e-9)
    if scheduler == "plateau":
        config = fit.lr_scheduler_configs[0]
        assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        assert config.monitor == "val/loss" and config.scheduler.mode == "min"


def test_cosine_reaches_min_lr_and_step_decays_at_step_size(datamodule):
    """Schedules read straight off the LambdaLR the module configures (10 epochs, 1 warm-up)."""
    for name, at, expected in (("cosine", 10, MIN_LR), ("cosine", 1, LR), ("step", 1, LR),
                               ("step", 3, LR), ("step", 4, LR * GAMMA), ("step", 7, LR * GAMMA ** 2)):
        module = build("gat", datamodule, optimizer=dict(lr=LR),
                       scheduler=dict(name=name, warmup_epochs=1, step_size=3, gamma=GAMMA,
                                      min_lr=MIN_LR))
        module.trainer = L.Trainer(max_epochs=10, logger=False, enable_progress_bar=False,
                                   enable_model_summary=False, enable_checkpointing=False)
        (optimizer,), (schedule,) = module.configure_optimizers()
        for _ in range(at):
            optimizer.step()
            schedule["scheduler"].step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9), (name, at)


def test_plateau_follows_the_monitor_direction_and_refuses_warmup(datamodule):
    module = build("gat", datamodule, monitor="val/auroc", scheduler=dict(name="plateau"))
    (_,), (schedule,) = module.configure_optimizers()
    assert schedule["monitor"] == "val/auroc" and schedule["scheduler"].mode == "max"
    module = build("gat", datamodule, scheduler=dict(name="plateau", warmup_epochs=1))
    with pytest.raises(ValueError, match="scheduler.warmup_epochs"):
        module.configure_optimizers()


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer=dict(name="rmsprop")), "optimizer.name='rmsprop'"),
    (dict(scheduler=dict(name="linear")), "scheduler.name='linear'"),
    (dict(scheduler=dict(warmup_epochs=-1)), "scheduler.warmup_epochs=-1"),
])
def test_invalid_optimizer_or_schedule_names_the_key(settings, message, datamodule):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build("gat", datamodule, **settings)


# --------------------------------------------------------------------------- honest evaluation
def test_evaluation_fits_the_threshold_on_validation_and_applies_it_to_every_scenario(datamodule,
                                                                                     tmp_path):
    module = build("gat", datamodule)
    trainer().fit(module, datamodule=datamodule)
    document = evaluate(module, datamodule, tmp_path)
    store = datamodule.store
    val = store.graphs_of("val")
    threshold = choose_threshold(score_graphs(module, store, val), store.y[val].astype(np.int64))
    assert document["threshold"] == {"value": threshold, "rule": "f1", "fit_on": "validation"}
    with gzip.open(tmp_path / "predictions.csv.gz", "rt") as handle:
        header, *rows = handle.read().splitlines()
    columns = header.split(",")
    for line in rows[:50]:
        row = dict(zip(columns, line.split(",")))
        assert int(row["prediction"]) == int(float(row["score"]) >= threshold)
    # A scenario without attacks has no AUROC: null with a note, never 0.
    suppress = document["test"]["test_05_suppress"]
    assert suppress["positives"] == 0 and suppress["auroc"] is None and suppress["notes"]
    # causal_recording: the evidence is the GAT's logit margin (the same ranking as the
    # probability, unsaturated); its threshold keeps benign validation alarms within the budget.
    causal = document["protocols"]["causal_recording"]
    assert causal["threshold"]["rule"] == "benign_quantile" and causal["threshold"]["fit_on"] == "validation"
    assert causal["validation"]["fpr"] <= causal["settings"]["benign_fpr"]
    for line in rows[:50]:
        row = dict(zip(columns, line.split(",")))
        assert 1 / (1 + np.exp(-float(row["evidence"]))) == pytest.approx(float(row["score"]), abs=1e-5)


# --------------------------------------------------------------------------- kdgat-train
def test_kdgat_train_runs_one_stage_end_to_end(kdgat_train, datamodule, tmp_path):
    """The real entry point, in a subprocess: a tiny GAT for one smoke epoch."""
    overrides = ["trainer=smoke", "model=gat", "size=tiny", "seed=3"]
    result = kdgat_train(tmp_path, *overrides)
    run = only_run(tmp_path, "automotive/synthetic/classifier/gat/tiny/no/all_samples")
    assert str(run) in result.stdout
    metrics = check_run_dir(run, datamodule)

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 3 and config["run_dir"] == str(run.resolve())
    assert config["network"]["_target_"] == "kdgat.models.builders.gat"
    assert {k: config["network"][k] for k in builders.SIZES["gat"]["tiny"]} == builders.SIZES["gat"]["tiny"]
    saved_overrides = yaml.safe_load((run / "overrides.yaml").read_text())
    assert set(overrides) <= set(saved_overrides)
    assert metrics["summary"]["parameters"] == count_parameters(
        builders.gat(**graph_dims(datamodule), **builders.SIZES["gat"]["tiny"]))

    # The predictions are the best checkpoint's scores: reload it strictly and score again.
    network = load_network(run, graph_dims(datamodule)).eval()
    store = datamodule.store
    graphs = store.graphs_of("test_01_known_vehicle_known_attack")[:20]
    batch = store.assemble(graphs)
    with torch.no_grad():
        again = network(batch.x, batch.node_id, batch.edge_index, batch.edge_attr, batch.batch,
                        batch.num_graphs).softmax(-1)[:, 1].numpy()
    with gzip.open(run / "predictions.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()[1:21]
    assert np.allclose([float(line.split(",")[5]) for line in lines], again, atol=1e-6)


CHAIN = [  # (overrides, grid path below automotive/synthetic), in dependency order
    (["model=vgae", "size=teacher", "mode=normals_only"], "unsupervised/vgae/teacher/no/normals_only"),
    (["model=gat", "size=teacher"], "classifier/gat/teacher/no/all_samples"),
    (["model=gat", "size=tiny", "distillation=standard"], "classifier/gat/tiny/standard/all_samples"),
    (["model=vgae", "size=tiny", "distillation=topology_preserving", "mode=normals_only"],
     "unsupervised/vgae/tiny/topology_preserving/normals_only"),
    (["model=vgae", "size=tiny", "mode=normals_only"], "unsupervised/vgae/tiny/no/normals_only"),
    (["model=gat", "size=tiny"], "classifier/gat/tiny/no/all_samples"),
    (["model=dqn", "size=tiny"], "fusion/dqn/tiny/no/all_samples"),
    (["model=mlp", "size=tiny"], "fusion/mlp/tiny/no/all_samples"),
    (["model=gat", "size=tiny", "mode=curriculum"], "classifier/gat/tiny/no/curriculum"),
]


@pytest.mark.slow
def test_kdgat_train_runs_the_whole_dependency_chain(kdgat_train, datamodule, tmp_path):
    """Teachers, distilled students, fusion inputs, both fusion agents and the curriculum GAT, each
    through ``kdgat-train`` and finding what it needs among the runs before it."""
    # Nothing is trained before its dependencies exist: the error says what to run.
    refused = kdgat_train(tmp_path, "trainer=smoke", "model=dqn", "size=tiny", check=False)
    assert refused.returncode == 2 and "kdgat-train experiment=" in refused.stderr
    runs = {}
    for overrides, path in CHAIN:
        kdgat_train(tmp_path, "trainer=smoke", *overrides)
        runs[path] = only_run(tmp_path, f"automotive/synthetic/{path}")
        metrics = check_run_dir(runs[path], datamodule)
        for role, dependency in read(runs[path], "status.json")["dependencies"].items():
            assert dependency in {str(r) for r in runs.values()}, (path, role, dependency)
            assert metrics["dependencies"][role] == dependency

    def dependencies(path: str) -> dict:
        return read(runs[path], "status.json")["dependencies"]

    student, teacher = "classifier/gat/tiny/standard/all_samples", "classifier/gat/teacher/no/all_samples"
    assert dependencies(student) == {"teacher": str(runs[teacher])}
    assert dependencies("fusion/dqn/tiny/no/all_samples") == {
        "vgae": str(runs["unsupervised/vgae/tiny/no/normals_only"]),
        "gat": str(runs["classifier/gat/tiny/no/all_samples"])}
    assert dependencies("classifier/gat/tiny/no/curriculum") == {
        "scorer": str(runs["unsupervised/vgae/teacher/no/normals_only"])}
    # The resolved dependency is pinned in the saved config, so the run can be reproduced.
    config = read(runs[student], "config.yaml")
    assert config["module"]["distillation"]["teacher_run"] == str(runs[teacher].resolve())
    # The distilled students logged their distillation terms, non-zero, every epoch.
    history = read(runs[student], "metrics.json")["history"]
    assert history["train/kd_loss"] and all(v > 0 for v in history["train/kd_loss"])
    history = read(runs["unsupervised/vgae/tiny/topology_preserving/normals_only"], "metrics.json")["history"]
    assert history["train/lsp_loss"] and all(v > 0 for v in history["train/lsp_loss"])


def read(run, name: str) -> dict:
    """A run's JSON or YAML file (JSON is YAML)."""
    return yaml.safe_load((run / name).read_text())
