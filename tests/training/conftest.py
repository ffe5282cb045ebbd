"""Fixtures of the training-stage tests: the synthetic dataset (built once per session), tiny stage
modules, a quiet one-epoch Trainer, completed runs made in-process, and ``kdgat-train``.

Everything trains at the ``tiny`` sizes of :data:`kdgat.models.builders.SIZES` on CPU for one
epoch of two batches; a "teacher" in these tests is the ``student`` size (bigger than ``tiny``, with
other widths, which is what distillation has to bridge) unless a test says otherwise.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

SYNTH_SEED = 0


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The ``data_root`` holding ``synthetic/`` (``synthesize(seed=0, scale="small")``)."""
    from kdgat.data.synth import synthesize

    root = tmp_path_factory.mktemp("training-data")
    synthesize(root / "synthetic", seed=SYNTH_SEED, scale="small")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One graph cache for the session (in-process datamodules and ``kdgat-train`` share it)."""
    return tmp_path_factory.mktemp("training-cache")


def make_datamodule(synthetic_root: Path, cache_dir: Path, **settings):
    from kdgat.data.datamodule import CANGraphDataModule

    datamodule = CANGraphDataModule(**{"dataset": "synthetic", "data_root": str(synthetic_root),
                                       "cache_dir": str(cache_dir), "batch_size": 32,
                                       "eval_batch_size": 64, **settings})
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="session")
def datamodule(synthetic_root, cache_dir):
    """The shared datamodule (batch size 32). Read it only: no ``set_curriculum`` on it."""
    return make_datamodule(synthetic_root, cache_dir)


@pytest.fixture
def fresh_datamodule(synthetic_root, cache_dir):
    """A datamodule of this test alone (for curriculum or other changes)."""
    return make_datamodule(synthetic_root, cache_dir)


def graph_dims(datamodule) -> dict[str, int]:
    return dict(num_ids=datamodule.num_ids, in_channels=datamodule.num_node_features,
                edge_dim=datamodule.num_edge_features)


def first_batches(datamodule, count: int = 2) -> list:
    """The first ``count`` training batches (the seeded sampler's epoch 0)."""
    loader = iter(datamodule.train_dataloader())
    return [next(loader) for _ in range(count)]


def one_batch_per_class(datamodule, size: int = 16):
    """A batch of validation windows, half attacks and half benign."""
    store = datamodule.store
    graphs = store.graphs_of("val")
    attack, benign = graphs[store.y[graphs] == 1], graphs[store.y[graphs] == 0]
    return store.assemble(np.concatenate([attack[: size // 2], benign[: size // 2]]))


# --------------------------------------------------------------------------- modules
def network_conf(model: str, size: str = "tiny"):
    """The config store's ``network`` option ``{model}_{size}`` (a partial builds of the builder)."""
    from kdgat.config.store import store

    return store["network", f"{model}_{size}"]


def network(model: str, size: str = "tiny"):
    """The builder partial that the ``{model}_{size}`` network option instantiates to."""
    from hydra_zen import instantiate

    return instantiate(network_conf(model, size))


def stage_settings(distillation: str = "no", optimizer: dict | None = None,
                   scheduler: dict | None = None, **distill) -> dict:
    from kdgat.training.settings import DistillationSettings, OptimizerSettings, SchedulerSettings

    return dict(optimizer=OptimizerSettings(**(optimizer or {})),
                scheduler=SchedulerSettings(**(scheduler or {})),
                distillation=DistillationSettings(kind=distillation, **distill))


def classifier(datamodule, size: str = "tiny", distillation: str = "no", monitor: str = "val/loss",
               **settings):
    from kdgat.training.classifier import ClassifierModule

    return ClassifierModule(network("gat", size), **graph_dims(datamodule), monitor=monitor,
                            **stage_settings(distillation, **settings))


def unsupervised(datamodule, size: str = "tiny", distillation: str = "no", **settings):
    from kdgat.training.unsupervised import UnsupervisedModule

    return UnsupervisedModule(network("vgae", size), **graph_dims(datamodule),
                              **stage_settings(distillation, **settings))


def benign_reference(vgae, datamodule) -> np.ndarray:
    """The VGAE's scores of the benign training windows (what the fusion stage maps v with)."""
    from kdgat.training.stage import _anomaly_scores

    store = datamodule.store
    train = store.graphs_of("train")
    return _anomaly_scores(vgae, store, train[store.y[train] == 0])


@functools.lru_cache(maxsize=None)
def _fusion_inputs(datamodule):
    from kdgat.models import builders

    dims = graph_dims(datamodule)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vgae = builders.vgae(**dims, **builders.SIZES["vgae"]["tiny"])
        gat = builders.gat(**dims, **builders.SIZES["gat"]["tiny"])
    return vgae, gat, benign_reference(vgae, datamodule)


def fusion_inputs(datamodule):
    """Untrained tiny ``(vgae, gat, benign reference scores)`` (fixed seed; fresh copies each call,
    the scores computed once per datamodule)."""
    vgae, gat, reference = _fusion_inputs(datamodule)
    return copy.deepcopy(vgae), copy.deepcopy(gat), reference


def fusion(datamodule, kind: str, size: str = "tiny", distillation: str = "no", inputs=None,
           fusion_settings: dict | None = None, **settings):
    """A fusion module with frozen VGAE and GAT inputs (default: :func:`fusion_inputs`)."""
    from kdgat.training.fusion import FusionModule
    from kdgat.training.settings import FusionSettings

    module = FusionModule(network(kind, size), kind=kind, fusion=FusionSettings(**(fusion_settings or {})),
                          **stage_settings(distillation, **settings))
    vgae, gat, reference = fusion_inputs(datamodule) if inputs is None else inputs
    module.attach_inputs(vgae, gat, reference)
    return module


def trainer(**overrides):
    """A quiet CPU Trainer: one epoch of two training and two validation batches."""
    import lightning as L

    settings = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=2, accelerator="cpu",
                    devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, deterministic=True)
    return L.Trainer(**{**settings, **overrides})


# --------------------------------------------------------------------------- completed runs
def write_run(run_dir: Path, module, model: str, size: str, fit_datamodule=None) -> Path:
    """Make ``run_dir`` a completed run of ``module`` as ``kdgat-train`` leaves one: ``config.yaml``
    (with the ``network`` node of ``{model}_{size}``), ``checkpoints/best.ckpt`` written by Lightning
    after one short fit, and ``status.json`` completed."""
    from hydra_zen import to_yaml

    from kdgat.runs.rundir import set_status

    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml({"network": network_conf(model, size)}))
    fitter = trainer()
    fitter.fit(module, datamodule=fit_datamodule)
    fitter.save_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    set_status(run_dir, "completed")
    return run_dir


@dataclass
class CompletedRun:
    """A completed run made in-process, and the module it saved."""

    path: Path
    module: object


@pytest.fixture(scope="session")
def teacher_runs(tmp_path_factory, datamodule) -> dict[str, CompletedRun]:
    """Completed runs (made in-process) of a ``student``-size GAT and VGAE and of a ``tiny`` GAT,
    each trained one short epoch on the synthetic data: keys ``gat``, ``vgae``, ``gat_tiny``."""

    root = tmp_path_factory.mktemp("teacher-runs")
    torch.manual_seed(1)
    runs = {}
    for name, model, size, build in (("gat", "gat", "student", classifier),
                                     ("vgae", "vgae", "student", unsupervised),
                                     ("gat_tiny", "gat", "tiny", classifier)):
        module = build(datamodule, size)
        runs[name] = CompletedRun(write_run(root / name / "run_001", module, model, size, datamodule),
                                  module)
    return runs


def compose_config(*overrides: str):
    """The ``train`` config composed from the store, as ``kdgat-train OVERRIDES`` composes it."""
    from hydra import compose, initialize

    from kdgat.config.store import store

    store.add_to_hydra_store(overwrite_ok=True)
    with initialize(version_base="1.3", config_path=None):
        return compose("train", overrides=list(overrides))


def grid_point(cfg):
    from kdgat.grid import GridPoint

    return GridPoint(**{k: str(v) for k, v in cfg.grid.items()}).validate()


# --------------------------------------------------------------------------- run directories
def windows_per_scenario(datamodule) -> dict[str, int]:
    """Windows per test scenario of the synthetic data."""
    return {name: len(datamodule.store.graphs_of(name)) for name in datamodule.test_names}


def check_run_dir(run_dir: Path, datamodule, *, checkpoints: bool = True) -> dict:
    """Assert what every completed run leaves behind; return its ``metrics.json``.

    config.yaml, overrides.yaml, env.json, status.json (completed), both checkpoints, metrics per
    test scenario plus pooled with a threshold fit on validation, one prediction row per test
    window, and the plots.
    """
    run_dir = Path(run_dir)
    for name in ("config.yaml", "overrides.yaml", "env.json", "status.json", "metrics.json",
                 "predictions.csv.gz", "validation_predictions.csv.gz"):
        assert (run_dir / name).is_file(), f"{run_dir} lacks {name}"
    if checkpoints:
        assert (run_dir / "checkpoints" / "best.ckpt").is_file()
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed", status
    env = json.loads((run_dir / "env.json").read_text())
    assert env["packages"]["torch"] and env["python"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold"]["fit_on"] == "validation"
    assert metrics["validation"]["threshold"] == metrics["threshold"]["value"]
    windows = windows_per_scenario(datamodule)
    assert set(metrics["test"]) == set(windows) | {"pooled"}
    for scenario, count in windows.items():
        assert metrics["test"][scenario]["n"] == count
        assert metrics["test"][scenario]["threshold"] == metrics["threshold"]["value"]
    assert metrics["test"]["pooled"]["n"] == sum(windows.values())
    suppress = metrics["test"]["test_05_suppress"]
    assert suppress["positives"] == 0
    assert suppress["auroc"] is None
    assert any("AUROC" in note for note in suppress["notes"])
    for scenario, values in metrics["test"].items():
        if scenario != "test_05_suppress":
            assert values["auroc"] is not None and 0.0 <= values["auroc"] <= 1.0, scenario

    with gzip.open(run_dir / "predictions.csv.gz", "rt") as handle:
        header, *rows = handle.read().splitlines()
    columns = header.split(",")
    assert columns == ["file", "window_index", "scenario", "label", "attack_type", "score",
                       "prediction", "evidence", "causal_z", "causal_prediction"]
    assert len(rows) == sum(windows.values())
    per_scenario: dict[str, int] = {}
    for line in rows:
        scenario = line.split(",")[2]
        per_scenario[scenario] = per_scenario.get(scenario, 0) + 1
    assert per_scenario == windows

    # The causal_recording protocol beside the strict one, over the same windows.
    assert metrics["protocol"] == "strict"
    causal = metrics["protocols"]["causal_recording"]
    assert causal["unavailable"] is None and causal["threshold"]["fit_on"] == "validation"
    assert {s: v["n"] for s, v in causal["test"].items()} == {s: v["n"] for s, v in metrics["test"].items()}
    for line in rows[:200]:
        row = dict(zip(columns, line.split(",")))
        assert int(row["causal_prediction"]) == int(float(row["causal_z"]) >= causal["threshold"]["value"])
    # The validation windows both thresholds were fit on, with the same columns.
    with gzip.open(run_dir / "validation_predictions.csv.gz", "rt") as handle:
        header, *val_rows = handle.read().splitlines()
    assert header.split(",") == columns and len(val_rows) == metrics["validation"]["n"]
    val = [dict(zip(columns, line.split(","))) for line in val_rows]
    assert {row["scenario"] for row in val} == {"validation"}
    assert sum(int(row["prediction"]) == 1 and row["label"] == "1" for row in val) == metrics["validation"]["tp"]
    assert sum(int(row["causal_prediction"]) == 1 and row["label"] == "0" for row in val) == causal["validation"]["fp"]

    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert {"roc_pr.png", "confusion_matrix.png"} <= plots
    assert all((run_dir / "plots" / name).stat().st_size > 0 for name in plots)
    return metrics


# --------------------------------------------------------------------------- kdgat-train
def kdgat_train_command() -> list[str]:
    script = Path(sys.executable).parent / "kdgat-train"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kdgat.train"]


@pytest.fixture(scope="session")
def kdgat_train(synthetic_root, cache_dir):
    """Run ``kdgat-train`` in a real subprocess on the session's synthetic data and cache.

    ``kdgat_train(runs_root, *overrides)`` returns the completed process; it asserts a zero exit
    code (showing the output otherwise).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}

    def run(runs_root: Path, *overrides: str, check: bool = True, timeout: float = 300):
        command = [*kdgat_train_command(), f"runs_root={runs_root}", f"data_root={synthetic_root}",
                   f"cache_dir={cache_dir}", *overrides]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=runs_root,
                                timeout=timeout)
        if check:
            assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
        return result
    return run


def only_run(runs_root: Path, point_path: str) -> Path:
    """The single run directory of a grid point's folder."""
    runs = sorted((Path(runs_root) / point_path).glob("run_*"))
    assert len(runs) == 1, runs
    return runs[0]
