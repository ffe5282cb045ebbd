"""The default SQLite MLflow store under many jobs at once, and runs that never reached MLflow.

Jobs are real processes (a ``forkserver``: each starts like a fresh job, with nothing of MLflow
set up) released together by a barrier; each logs a finished run directory, written here with
the files ``kdgat-train`` leaves (config, status, metrics, env, plots, predictions, Lightning's
CSV log), through :func:`kdgat.tracking.track`, as ``kdgat-train`` does when a run ends.
The store is read back with ``MlflowClient`` and sqlite3; ``kdgat mlflow-sync`` runs as a user
runs it.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

POINT = "automotive/synthetic/classifier/gat/tiny/no/all_samples"
NAME = "automotive_synthetic_classifier_gat_tiny_no_all_samples"
EXPERIMENT = "kdgat/automotive/synthetic"
KDGAT = Path(sys.executable).parent / "kdgat"
# A 1x1 PNG: the plots are logged as files, their content does not matter here.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
SCENARIOS = ["test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack",
             "test_03_known_vehicle_unknown_attack", "test_04_unknown_vehicle_unknown_attack",
             "test_05_suppress", "test_06_masquerade", "pooled"]


# --------------------------------------------------------------------------- run directories
def write_run(root: Path, number: int, status: str = "completed", metrics: bool = True,
              tracking: dict | None = None, sweep_dir: Path | None = None) -> Path:
    """A finished ``run_NNN`` as ``kdgat-train`` leaves it (a failed one: no metrics or plots)."""
    run_dir = root / POINT / f"run_{number:03d}"
    (run_dir / "logs").mkdir(parents=True)
    grid = dict(zip(["modality", "dataset", "learning_type", "model", "size", "distillation", "mode"],
                    POINT.split("/")))
    settings = {"_target_": "kdgat.training.settings.OptimizerSettings"}
    config = {  # kdgat-train's resolved config of a tiny GAT run (87 params once flattened)
        "grid": grid, "seed": number, "runs_root": str(root), "data_root": None,
        "cache_dir": str(root / ".cache"),
        "datamodule": {"_target_": "kdgat.data.datamodule.CANGraphDataModule", "dataset": "synthetic",
                       "data_root": None, "cache_dir": str(root / ".cache"), "window": 100,
                       "stride": 100, "val_fraction": 0.2, "on_error": "fail", "batch_size": 64,
                       "eval_batch_size": 256, "oov_buckets": 8, "train_windows": "all", "seed": number,
                       "synth_scale": "small", "num_workers": 0, "unseen_id_rate": 0.25},
        "network": {"_target_": "kdgat.models.builders.gat", "_partial_": True, "emb_dim": 4,
                    "hidden": 8, "heads": 2, "num_layers": 1, "jk_mode": "cat", "head_hidden": None,
                    "dropout": 0.2, "num_classes": 2},
        "module": {"optimizer": {**settings, "name": "adam", "lr": 0.001, "weight_decay": 0.0001,
                                 "momentum": 0.9},
                   "scheduler": {**settings, "name": "none", "warmup_epochs": 0, "step_size": 10,
                                 "gamma": 0.5, "patience": 5, "min_lr": 1.0e-06},
                   "distillation": {**settings, "kind": "no", "alpha": 0.7, "temperature": 4.0,
                                    "lsp_weight": 1.0, "lsp_kernel": "rbf", "lsp_sigma": 1.0,
                                    "teacher_run": None},
                   "monitor": "val/loss", "_target_": "kdgat.training.classifier.ClassifierModule"},
        "curriculum": {**settings, "enabled": False, "start_ratio": 1.0, "ramp_epochs": 10,
                       "scorer_run": None},
        "early_stopping": {**settings, "enabled": True, "patience": 10, "min_delta": 0.0},
        "trainer": {"_target_": "lightning.pytorch.Trainer", "max_epochs": 30, "min_epochs": 1,
                    "accelerator": "auto", "devices": "auto", "precision": "32-true",
                    "gradient_clip_val": 1.0, "deterministic": False, "log_every_n_steps": 10,
                    "limit_train_batches": 2.0, "limit_val_batches": 2.0, "num_sanity_val_steps": 0,
                    "enable_progress_bar": False, "enable_model_summary": False},
        "tracking": {"_target_": "kdgat.tracking.TrackingSettings", "enabled": True, "tracking_uri": None,
                     **(tracking or {})},
        "threshold_rule": "f1", "run_dir": str(run_dir),
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "overrides.yaml").write_text(yaml.safe_dump([f"runs_root={root}", "size=tiny"]))
    (run_dir / "env.json").write_text(json.dumps({
        "git_commit": "958561e16fb4d91690fffcd60ab6fd8c26fe74b1", "git_dirty": False,
        "packages": {"mlflow": "3.17.2"}, "python": "3.11.7", "host": "vm", "gpu": None, "slurm": {}}))
    (run_dir / "logs" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss\n" + "".join(f"{e},{e + 1},0.{9 - e},0.{9 - e}\n" for e in range(3)))
    document = {"history": [{"status": "running", "time": "2026-01-01T00:00:00+00:00"},
                            {"status": status, "time": "2026-01-01T00:01:00+00:00"}],
                "grid_point": NAME, "dependencies": {}, "sweep_dir": str(sweep_dir) if sweep_dir else None,
                "status": status, "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:01:00+00:00"}
    if status == "failed":
        document.update(error="RuntimeError: CUDA out of memory while training epoch 3",
                        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory")
    if metrics:
        numbers = {"n": 208, "positives": 31, "negatives": 177, "threshold": 0.58, "tn": 149, "fp": 28,
                   "fn": 22, "tp": 9, "accuracy": 0.76, "precision": 0.24, "recall": 0.29,
                   "f1": 0.5 + number / 1000, "balanced_accuracy": 0.57, "mcc": 0.12, "fpr": 0.16,
                   "auroc": 0.52, "auprc": 0.19, "notes": []}
        document["summary"] = {"grid_point": NAME, "test_pooled_f1": numbers["f1"]}
        (run_dir / "metrics.json").write_text(json.dumps({
            "threshold": {"value": 0.5, "rule": "f1", "fit_on": "validation"},
            "validation": numbers, "test": {scenario: numbers for scenario in SCENARIOS},
            "summary": document["summary"],
            "history": {curve: [1.0 / (epoch + 1) for epoch in range(30)]
                        for curve in ("train/loss", "train/task_loss", "val/auroc", "val/loss",
                                      "val/task_loss")}}))
        (run_dir / "plots").mkdir()
        for plot in ("confusion_matrix.png", "learning_curves.png", "roc_pr.png"):
            (run_dir / "plots" / plot).write_bytes(PNG)
        with gzip.open(run_dir / "predictions.csv.gz", "wt") as out:
            out.write("file,window_index,scenario,label,attack_type,score,prediction\n")
            out.writelines(f"{SCENARIOS[0]}/DoS.csv.gz,{i},{SCENARIOS[0]},0,benign,0.4,0\n" for i in range(50))
    (run_dir / "status.json").write_text(json.dumps(document, indent=1))
    return run_dir


# --------------------------------------------------------------------------- jobs, store, sync
def _job(barrier, run_dir: str, runs_root: str) -> None:
    """One job's end: wait for the others, then log the run as ``kdgat-train`` does (with the
    tracking settings of its config)."""
    from kdgat.tracking import TrackingSettings, track

    settings = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["tracking"]
    barrier.wait(timeout=120)
    track(Path(run_dir), TrackingSettings(**{k: v for k, v in settings.items() if k != "_target_"}),
          runs_root)


def run_jobs(run_dirs: list[Path], runs_root: Path, busy: float = 0) -> float:
    """Log ``run_dirs`` from as many processes started together; returns the seconds it took.

    The forkserver imports MLflow once for all jobs (that is only time: 2 cores, dozens of jobs);
    nothing of a store is set up before a job starts. With ``busy``, another writer holds the
    default store's SQLite lock for that many seconds once the jobs are released.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["kdgat.tracking", "yaml", "mlflow.tracking", "mlflow.entities",
                                    "mlflow.store.tracking.sqlalchemy_store", "alembic.command",
                                    "mlflow.store.artifact.local_artifact_repo"])
    barrier = context.Barrier(len(run_dirs) + 1)  # the jobs and this process
    jobs = [context.Process(target=_job, args=(barrier, str(d), str(runs_root))) for d in run_dirs]
    for job in jobs:
        job.start()
    writer = None
    if busy:
        writer = sqlite3.connect(runs_root / "mlflow.db", isolation_level=None)
        writer.execute("BEGIN EXCLUSIVE")
    barrier.wait(timeout=120)
    started = time.perf_counter()
    if writer is not None:
        time.sleep(busy)
        writer.execute("COMMIT")
        writer.close()
    for job in jobs:
        job.join(timeout=600)
    assert [job.exitcode for job in jobs] == [0] * len(jobs)
    return time.perf_counter() - started


def tracking_states(run_dirs: list[Path]) -> dict[str, int]:
    states = [json.loads((d / "tracking.json").read_text())["status"] if (d / "tracking.json").is_file()
              else None for d in run_dirs]
    return {state: states.count(state) for state in set(states)}


def logged_runs(uri: str) -> dict[str, object]:
    """The MLflow runs of kdgat run directories in ``uri``, by run directory."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} in {uri}"
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    return {run.data.tags["kdgat.run_dir"]: run for run in found if "kdgat.run_dir" in run.data.tags}


def assert_healthy(database: Path) -> None:
    """The SQLite file is at MLflow's latest schema with no migration left halfway."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    with sqlite3.connect(database) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == _get_latest_schema_revision()
    assert not {t for t in tables if t.startswith("_alembic_tmp")}, tables


def sync(runs_root: Path, *args: str) -> subprocess.CompletedProcess:
    """``kdgat mlflow-sync`` in a subprocess, as a user runs it."""
    command = [str(KDGAT)] if KDGAT.is_file() else [sys.executable, "-m", "kdgat.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDGAT_")}
    result = subprocess.run([*command, "mlflow-sync", "--runs-root", str(runs_root), *args],
                            capture_output=True, text=True, env=env, timeout=300)
    result.report = f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# --------------------------------------------------------------------------- the race
def test_16_jobs_finishing_together_on_a_fresh_runs_root_are_all_logged(tmp_path):
    """Before: 16 jobs migrated the fresh store at once and left it half-migrated (0 logged;
    every later run and sync failed on it)."""
    root = tmp_path / "runs"
    run_dirs = [write_run(root, number) for number in range(1, 17)]
    seconds = run_jobs(run_dirs, root)
    print(f"16 concurrent loggers on a fresh store: {seconds:.1f} s")

    assert tracking_states(run_dirs) == {"logged": 16}
    assert_healthy(root / "mlflow.db")
    logged = logged_runs(f"sqlite:///{root}/mlflow.db")
    assert set(logged) == {str(d) for d in run_dirs}
    assert {run.info.status for run in logged.values()} == {"FINISHED"}
    assert {run.info.run_name for run in logged.values()} == {f"{NAME}/{d.name}" for d in run_dirs}
    result = sync(root)
    assert result.returncode == 0, result.report
    assert "0 logged, 0 still pending (16 runs" in result.stdout


@pytest.mark.slow
def test_64_jobs_finishing_together_on_a_busy_store_leave_none_pending(tmp_path):
    """Before: SQLite's "database is locked" left about a third of 64 runs pending. How many
    depends on the machine's load, so here the store is also held by another writer (a long
    transaction, a slow shared filesystem) for longer than the 20 s MLflow's SQLite sessions
    wait, as the 64 jobs start: before, every job gave up; now each waits, then all 64 rush in."""
    from kdgat.tracking import TrackingSettings, track

    root = tmp_path / "runs"
    track(write_run(root, 1), TrackingSettings(), root)  # the store exists: an earlier run made it
    run_dirs = [write_run(root, number) for number in range(2, 66)]
    seconds = run_jobs(run_dirs, root, busy=22)
    print(f"64 concurrent loggers, store held busy for the first 22 s: {seconds:.1f} s")

    assert tracking_states(run_dirs) == {"logged": 64}
    assert_healthy(root / "mlflow.db")
    logged = logged_runs(f"sqlite:///{root}/mlflow.db")
    assert len(logged) == 65 and {run.info.status for run in logged.values()} == {"FINISHED"}
    for run in logged.values():  # everything of every run, not just its MLflow run
        assert len(run.data.params) > 30 and "test/pooled/f1" in run.data.metrics
    result = sync(root)
    assert result.returncode == 0 and "0 logged, 0 still pending (65 runs" in result.stdout, result.report


def test_a_store_left_half_migrated_is_rebuilt_and_one_with_runs_is_never_touched(tmp_path):
    """A migration killed halfway (here: four migrations done, the fifth killed after its batch
    copy into ``_alembic_tmp_latest_metrics``, as a sweep's racing jobs left it) is a store that no
    MLflow can open or upgrade ("table _alembic_tmp_latest_metrics already exists"): the next job
    keeps it aside and builds a complete one."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from sqlalchemy import create_engine, text

    from kdgat.tracking import TrackingSettings, track

    root = tmp_path / "runs"
    root.mkdir()
    uri = f"sqlite:///{root}/mlflow.db"
    engine = create_engine(uri)
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config = _get_alembic_config(uri)
        config.attributes["connection"] = connection
        command.upgrade(config, "a8c4a736bde6")  # four migrations in, dozens to go
        connection.execute(text("CREATE TABLE _alembic_tmp_latest_metrics AS SELECT * FROM latest_metrics"))
    engine.dispose()

    run_dir = write_run(root, 1)
    assert track(run_dir, TrackingSettings(), root) is not None
    assert_healthy(root / "mlflow.db")
    assert len(list(root.glob("mlflow.db.half-built-*"))) == 1  # kept, not deleted
    assert set(logged_runs(uri)) == {str(run_dir)}

    # A store with runs in it at another schema version: left exactly as it is, the run pending.
    with sqlite3.connect(root / "mlflow.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")
    before = (root / "mlflow.db").read_bytes()
    other = root / "elsewhere"
    second = write_run(other, 2, tracking={"tracking_uri": uri})
    run_jobs([second], other)  # a later job: a process of its own
    pending = json.loads((second / "tracking.json").read_text())
    assert pending["status"] == "pending" and "mlflow db upgrade" in pending["error"]
    assert (root / "mlflow.db").read_bytes() == before


def test_the_launching_process_creates_the_store_and_experiments_once(tmp_path):
    """``prepare_stores`` (the launcher, ``-m`` sweeps, ``kdgat pipeline``): the store exists
    before any job starts; a dry run or tracking turned off creates nothing."""
    from kdgat.tracking import prepare_store_for, prepare_stores

    grid = {"modality": "automotive", "dataset": "synthetic"}
    quiet = tmp_path / "quiet"
    prepare_stores([{"runs_root": str(quiet), "grid": grid, "tracking": {"enabled": False}},
                    {"runs_root": str(quiet), "grid": grid, "tracking": {"enabled": True},
                     "hydra": {"launcher": {"dry_run": True}}}])
    prepare_store_for(quiet, ["trainer=smoke", "tracking.enabled=false"])
    assert not quiet.exists()

    root = tmp_path / "runs"
    prepare_stores([{"runs_root": str(root), "grid": grid, "tracking": {"enabled": True}}])
    assert_healthy(root / "mlflow.db")
    assert logged_runs(f"sqlite:///{root}/mlflow.db") == {}  # the experiment exists, no runs yet
    elsewhere = tmp_path / "elsewhere.db"
    prepare_store_for(root, [f"tracking.tracking_uri=sqlite:///{elsewhere}"])
    assert_healthy(elsewhere)


# --------------------------------------------------------------------------- runs never logged
def test_a_run_that_failed_before_metrics_is_logged_as_failed(tmp_path):
    """Before: KeyError 'validation'; the MLflow run stayed RUNNING and sync exited 1 for ever."""
    from kdgat.tracking import TrackingSettings, track

    root = tmp_path / "runs"
    run_dir = write_run(root, 1, status="failed", metrics=False)
    run_id = track(run_dir, TrackingSettings(), root)
    assert run_id is not None
    tracking = json.loads((run_dir / "tracking.json").read_text())
    assert tracking["status"] == "logged" and tracking["run_id"] == run_id and "error" not in tracking

    uri = f"sqlite:///{root}/mlflow.db"
    logged = logged_runs(uri)[str(run_dir)]
    assert logged.info.status == "FAILED"
    assert logged.data.tags["kdgat.status"] == "failed"
    assert logged.data.tags["kdgat.error"] == "RuntimeError: CUDA out of memory while training epoch 3"
    assert logged.data.params["grid.model"] == "gat" and logged.data.params["trainer.max_epochs"] == "30"
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"config.yaml", "status.json", "env.json", "logs"} <= artifacts and "metrics.json" not in artifacts
    result = sync(root)
    assert result.returncode == 0 and "0 logged, 0 still pending (1 runs" in result.stdout, result.report


def test_sync_sends_finished_runs_that_have_no_tracking_record(tmp_path):
    """Before: a run killed between "completed" and its tracking record was "0 pending" for ever."""
    from kdgat.tracking import TrackingSettings, track

    root = tmp_path / "runs"
    uri = f"sqlite:///{root}/mlflow.db"
    never = write_run(root, 1)  # killed before logging began
    failed = write_run(root, 2, status="failed", metrics=False)
    halfway = write_run(root, 3)  # killed after its MLflow run was made, before the record
    first_id = track(halfway, TrackingSettings(), root)
    (halfway / "tracking.json").unlink()
    untracked = write_run(root, 4, tracking={"enabled": False})  # tracking turned off: not sent
    running = write_run(root, 5)
    status = json.loads((running / "status.json").read_text())
    (running / "status.json").write_text(json.dumps({**status, "status": "running"}))

    result = sync(root)
    assert result.returncode == 0, result.report
    assert "3 logged, 0 still pending (5 runs" in result.stdout
    assert "completed, never logged" in result.stdout and "failed, never logged" in result.stdout
    logged = logged_runs(uri)
    assert set(logged) == {str(never), str(failed), str(halfway)}
    assert logged[str(never)].info.status == "FINISHED" and logged[str(failed)].info.status == "FAILED"
    assert logged[str(halfway)].info.run_id == first_id  # the same MLflow run, no duplicate
    for run_dir in (never, failed, halfway):
        assert json.loads((run_dir / "tracking.json").read_text())["status"] == "logged"
    assert not (untracked / "tracking.json").exists() and not (running / "tracking.json").exists()

    again = sync(root)
    assert again.returncode == 0 and "0 logged, 0 still pending" in again.stdout, again.report
