"""The monitored validation metric (``monitor=val/loss|val/auroc|val/auprc|val/f1``) and the
settable fixed threshold (``threshold_rule=fixed threshold_fixed=VALUE``).

A label-based monitor is NaN on validation windows of one class, and Lightning's ModelCheckpoint
would then keep its first epoch as best.ckpt without a word: such a monitor is refused before any
run directory exists, and in an epoch whose (limited) validation lacks a class.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import yaml

from kdgat.evaluation.metrics import selection_metrics
from kdgat.training.checkpoints import load_checkpoint
from kdgat.training.evaluate import evaluate, score_graphs
from tests.conftest import KNOWN_IDS, TEST_01, TINY_WINDOW, TRAIN_01, TRAIN_02, periodic_rows

from .conftest import classifier, kdgat_train_command, only_run, trainer

QUIET = ("tracking.enabled=false",)
TINY_GAT = "automotive/synthetic/classifier/gat/tiny/no/all_samples"
MONITORS = ["val/loss", "val/auroc", "val/auprc", "val/f1"]


# --------------------------------------------------------------------------- in-process
def test_validation_logs_auroc_auprc_and_best_f1_of_every_validation_window(datamodule):
    torch.manual_seed(0)
    module = classifier(datamodule, monitor="val/auprc")
    fit = trainer(limit_val_batches=1.0)
    fit.fit(module, datamodule=datamodule)
    store = datamodule.store
    graphs = store.graphs_of("val")
    labels = store.y[graphs]
    assert 0 < labels.sum() < len(labels)
    expected = selection_metrics(labels, score_graphs(module, store, graphs))
    for name in ("auroc", "auprc", "f1"):
        assert float(fit.callback_metrics[f"val/{name}"]) == pytest.approx(expected[name], abs=1e-6)
    assert 0.0 < expected["f1"] <= 1.0


@pytest.mark.parametrize("monitor", ["val/auroc", "val/auprc", "val/f1"])
def test_a_label_monitor_refuses_an_epoch_whose_validation_has_one_class(monitor, datamodule):
    module = classifier(datamodule, monitor=monitor)
    module._val_scores, module._val_labels = [torch.tensor([0.2, 0.7])], [torch.tensor([0, 0])]
    with pytest.raises(ValueError, match=f"monitor={monitor} is computed from validation labels.*"
                                         "2 windows, 0 attack: no attack windows.*limit_val_batches"):
        module.on_validation_epoch_end()


def test_val_loss_monitor_logs_nan_label_metrics_on_one_class_validation(datamodule):
    module = classifier(datamodule, monitor="val/loss")
    logged = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)
    module._val_scores, module._val_labels = [torch.tensor([0.2, 0.7])], [torch.tensor([1, 1])]
    module.on_validation_epoch_end()
    assert set(logged) == {"val/auroc", "val/auprc", "val/f1"}
    assert all(math.isnan(v) for v in logged.values())  # NaN, never 0


def test_fixed_threshold_is_what_evaluation_applies(datamodule, tmp_path):
    torch.manual_seed(0)
    module = classifier(datamodule)
    document = evaluate(module, datamodule, tmp_path, threshold_rule="fixed", threshold_fixed=0.37)
    assert document["threshold"] == {"value": 0.37, "rule": "fixed", "fit_on": "validation"}
    assert document["validation"]["threshold"] == 0.37
    with gzip.open(tmp_path / "predictions.csv.gz", "rt") as handle:
        header, *rows = handle.read().splitlines()
    columns = header.split(",")
    score, prediction = columns.index("score"), columns.index("prediction")
    values = [line.split(",") for line in rows]
    assert [int(v[prediction]) for v in values] == [int(float(v[score]) >= 0.37) for v in values]


# --------------------------------------------------------------------------- kdgat-train
def test_kdgat_train_monitor_val_f1_selects_the_best_f1_epoch(kdgat_train, tmp_path):
    """Two epochs, validated on every window: best.ckpt is the epoch of the highest val/f1, and the
    test-time evaluation of it (threshold_rule=f1) reaches exactly that validation F1."""
    kdgat_train(tmp_path, "monitor=val/f1", "size=tiny", "trainer=smoke", "trainer.max_epochs=2",
                "trainer.limit_val_batches=null", "early_stopping.enabled=false", *QUIET)
    run_dir = only_run(tmp_path, TINY_GAT)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["monitor"] == "val/f1" and config["module"]["monitor"] == "val/f1"  # resolved
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history, summary = metrics["history"], metrics["summary"]
    assert summary["monitor"] == "val/f1" and summary["epochs"] == 2
    for name in ("val/auroc", "val/auprc", "val/f1"):
        assert len(history[name]) == 2 and all(0.0 <= v <= 1.0 for v in history[name]), name
    best = int(np.argmax(history["val/f1"]))
    assert summary["best_epoch_metric"] == pytest.approx(max(history["val/f1"]))
    assert load_checkpoint(run_dir / "checkpoints" / "best.ckpt")["epoch"] == best
    assert metrics["threshold"]["rule"] == "f1"
    assert metrics["validation"]["f1"] == pytest.approx(summary["best_epoch_metric"], abs=1e-6)


def test_kdgat_train_applies_threshold_fixed(kdgat_train, tmp_path):
    kdgat_train(tmp_path, "size=tiny", "trainer=smoke", "threshold_rule=fixed", "threshold_fixed=0.37",
                *QUIET)
    run_dir = only_run(tmp_path, TINY_GAT)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["threshold_fixed"] == 0.37
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold"] == {"value": 0.37, "rule": "fixed", "fit_on": "validation"}
    assert metrics["test"]["pooled"]["threshold"] == 0.37


def test_a_baseline_applies_threshold_fixed_and_ignores_the_monitor(kdgat_train, tmp_path):
    # window_stats scores log-odds: -1.5 is an attack probability of about 0.18.
    kdgat_train(tmp_path, "model=window_stats", "size=teacher", "threshold_rule=fixed",
                "threshold_fixed=-1.5", "monitor=val/auroc", *QUIET)
    run_dir = only_run(tmp_path, "automotive/synthetic/baseline/window_stats/teacher/no/all_samples")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold"]["value"] == -1.5 and metrics["summary"]["monitor"] is None


def _no_val_attacks() -> dict:
    """A tiny dataset whose only training attacks (rows 30-35 of DoS-a) lie before the
    validation block (as in tests/data/test_validation_classes.py)."""
    dos = periodic_rows(100, KNOWN_IDS, seed=2, attacks={k: 0x000 for k in range(30, 36)})
    return {
        f"{TRAIN_01}/attack-free-a.csv": periodic_rows(120, KNOWN_IDS, seed=1),
        f"{TRAIN_02}/DoS-a.csv": dos,
        f"{TEST_01}/DoS-b.csv": periodic_rows(60, KNOWN_IDS, seed=3, attacks={k: 0 for k in range(20, 30)}),
    }


def test_a_label_monitor_on_one_class_validation_is_refused_before_any_run_directory(
        make_dataset, tmp_path):
    root = make_dataset(_no_val_attacks(), name="synthetic")  # served as the default dataset
    runs = tmp_path / "runs"
    common = [*kdgat_train_command(), f"runs_root={runs}", f"data_root={root.parent}",
              f"cache_dir={tmp_path / 'cache'}", f"datamodule.window={TINY_WINDOW}",
              f"datamodule.stride={TINY_WINDOW}", "datamodule.batch_size=4", "trainer=smoke",
              "threshold_rule=fixed", *QUIET]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    refused = subprocess.run([*common, "monitor=val/auroc"], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = refused.stderr
    assert "monitor=val/auroc is computed from validation labels" in message
    assert "2 windows, 0 attack: no attack windows" in message and "Use monitor=val/loss" in message
    assert f"{TRAIN_02}/DoS-a.csv: 1 benign, 0 attack" in message and "Traceback" not in message
    assert not list(runs.rglob("run_[0-9]*"))
    # A baseline has no epochs to monitor: the same split and monitor run.
    done = subprocess.run([*common, "monitor=val/auroc", "model=majority", "size=teacher"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(runs.rglob("run_[0-9]*"))) == 1


def test_the_monitor_choices_are_the_modules():
    from kdgat.training.base import StageModule
    from kdgat.training.monitors import LABEL_MONITORS, MONITOR_MODES

    assert list(MONITOR_MODES) == MONITORS and StageModule.monitor_mode is MONITOR_MODES
    assert {m for m, mode in MONITOR_MODES.items() if mode == "max"} == set(LABEL_MONITORS)
